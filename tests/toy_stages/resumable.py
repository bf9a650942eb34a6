"""Toy stage 'resumable': keeps state in ctx.scratch across attempts."""

from toy_stages import run_counting


def run(ctx):
    return run_counting(ctx)
