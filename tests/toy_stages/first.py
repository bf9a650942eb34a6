"""Toy stage 'first': no inputs."""

from toy_stages import run_toy


def run(ctx):
    return run_toy("first", ctx, upstream=None)
