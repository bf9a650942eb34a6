"""Mutation testing of the contracts (data_contracts/) and the metrics (darkhalo/metrics/) with mutmut 3.

    python benchmarks/mutation.py            # or: tox -e mutation
    python benchmarks/mutation.py --score    # re-read the last run's results only

mutmut's configuration (what is mutated, which tests judge a mutant) is ``[tool.mutmut]`` in
pyproject.toml. The run works on a snapshot of the tree in ``.tox/mutation-work/`` (mutmut writes
its ``mutants/`` copy there, not in the checkout), prints the score per package and each surviving
mutant's diff, writes them to ``.tox/mutation-work/mutation-score.json`` and exits non-zero when a
package's score is under ``--min-score``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: What the snapshot holds: the sources (mutated or imported), the tests and the config.
SNAPSHOT = ("data_contracts", "darkhalo", "tests", "specs", "pyproject.toml")
#: The packages scored, by path prefix of the mutated file.
PACKAGES = ("data_contracts", "darkhalo/metrics")
#: mutmut 3's exit codes per mutant (mutmut.stats.status_by_exit_code): what counts as killed.
KILLED = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout"}
STATUS = {
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    None: "not checked",
    -9: "segfault",
    -11: "segfault",
}


def snapshot(work: Path) -> None:
    """A fresh copy of the tree's sources, tests and config in ``work`` (no caches)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in SNAPSHOT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, work / name, ignore=ignore)
        else:
            shutil.copy2(source, work / name)


def results(work: Path) -> dict[str, dict[str, str]]:
    """Each mutant's status by package, from mutmut's per-file ``.meta`` records."""
    by_package: dict[str, dict[str, str]] = {package: {} for package in PACKAGES}
    for meta in sorted((work / "mutants").rglob("*.py.meta")):
        source = meta.relative_to(work / "mutants").as_posix().removesuffix(".meta")
        package = next((p for p in sorted(PACKAGES, key=len, reverse=True) if source.startswith(p + "/")), None)
        if package is None:
            continue
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            by_package[package][name] = KILLED.get(code) or STATUS.get(code, "suspicious")
    return by_package


def show(work: Path, mutmut: list[str], name: str) -> str:
    """``mutmut show NAME``: the mutant's diff."""
    done = subprocess.run([*mutmut, "show", name], cwd=work, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / ".tox" / "mutation-work")
    parser.add_argument("--max-children", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--timeout", type=int, default=3600, help="seconds for the whole mutmut run")
    parser.add_argument("--min-score", type=float, default=90.0, help="percent killed each package must reach")
    parser.add_argument("--score", action="store_true", help="only score the last run in --work")
    parser.add_argument("--no-diffs", action="store_true", help="list surviving mutants without their diffs")
    args = parser.parse_args()
    mutmut = [sys.executable, "-m", "mutmut"]
    if not args.score:
        snapshot(args.work)
        run = [*mutmut, "run", "--max-children", str(args.max_children)]
        try:
            # one thread per worker: mutmut forks one pytest per mutant, torch and BLAS would oversubscribe
            env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
            subprocess.run(run, cwd=args.work, check=False, timeout=args.timeout, env=env)
        except subprocess.TimeoutExpired:
            print(f"mutmut run stopped after {args.timeout} s: scoring what it checked", file=sys.stderr)
    by_package = results(args.work)
    report, failed = {}, False
    for package, statuses in by_package.items():
        total = len(statuses)
        killed = sum(status in ("killed", "timeout") for status in statuses.values())
        score = 100.0 * killed / total if total else 0.0
        failed |= score < args.min_score
        others = sorted(name for name, status in statuses.items() if status not in ("killed", "timeout"))
        report[package] = {
            "killed": killed,
            "total": total,
            "score_percent": round(score, 1),
            "not_killed": {name: statuses[name] for name in others},
        }
        print(f"{package}: {killed} / {total} mutants killed ({score:.1f} %)")
        for name in others:
            print(f"  {statuses[name]}: {name}")
            if not args.no_diffs:
                print("    " + show(args.work, mutmut, name).replace("\n", "\n    "))
    (args.work / "mutation-score.json").write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
