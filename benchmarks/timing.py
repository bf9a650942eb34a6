"""The timing rules of the benchmarks: the best (shortest) of several runs, optionally after a warm-up, and
alternating rounds of several sides in CPU seconds."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(
    run: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter, warmup: bool = False
) -> float:
    """The shortest of ``repeats`` calls of ``run`` by ``clock`` (wall time by default); a shared
    machine only ever adds time, so the minimum is the least disturbed measurement."""
    if warmup:
        run()
    times = []
    for _ in range(repeats):
        start = clock()
        run()
        times.append(clock() - start)
    return min(times)


def interleaved(groups: list[list[Callable[[], object]]], rounds: int, repeats: int) -> list[float]:
    """Summed best CPU seconds of each group's calls over ``rounds`` alternating rounds (each call warmed
    up, then ``repeats`` times per round): a slow spell of the shared machine hits every side alike."""
    best = [[float("inf")] * len(calls) for calls in groups]
    for _ in range(rounds):
        for group, calls in zip(best, groups, strict=True):
            for i, call in enumerate(calls):
                group[i] = min(group[i], best_seconds(call, repeats, clock=time.process_time, warmup=True))
    return [sum(group) for group in best]
