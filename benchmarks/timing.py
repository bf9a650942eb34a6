"""The one timing rule of the benchmarks: the best (shortest) of several runs, optionally after a warm-up."""

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
