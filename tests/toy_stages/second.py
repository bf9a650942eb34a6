"""Toy stage 'second': reads 'first'."""

from toy_stages import run_toy


def run(ctx):
    return run_toy("second", ctx, upstream="first")
