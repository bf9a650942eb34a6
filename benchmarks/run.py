"""Run the benchmarks in this folder (``bench_*.py``), each a ratio against a named peer.

Each module has ``main() -> dict`` returning its measurements; results are printed and written
to ``benchmarks/results/<name>.json``. ``python benchmarks/run.py NAME...`` runs a subset.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    available = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    unknown = sorted(set(names) - set(available))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}")
        return 2
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    for name in names or available:
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        measured = importlib.import_module(f"bench_{name}").main()
        measured["wall_s"] = round(time.perf_counter() - started, 2)
        (results / f"{name}.json").write_text(json.dumps(measured, indent=2) + "\n")
        for key, value in measured.items():
            print(f"   {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
