"""Two tiny stages that exercise the runner (writing, failing, being killed) in milliseconds.

Their behaviour is chosen by the environment so that a killed child process can be driven too:
TOY_STAGE names the stage that misbehaves, TOY_BEHAVIOUR says how (raise, kill, fail_contract).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from darkhalo.stages.base import Stage, StageContext, StageResult
from data_contracts.findings import Finding


def run_toy(name: str, ctx: StageContext, upstream: str | None) -> StageResult:
    """Write ``<name>.txt`` (seed; train epochs after an upstream; its content), misbehaving when told to."""
    text = f"{name} seed={ctx.spec.seed}" + (f" epochs={ctx.spec.train.epochs}" if upstream else "") + "\n"
    if upstream:
        text += (ctx.input(upstream) / f"{upstream}.txt").read_text()
    target: Path = ctx.out / f"{name}.txt"
    behaviour = os.environ.get("TOY_BEHAVIOUR", "") if os.environ.get("TOY_STAGE") == name else ""
    with target.open("w") as handle:
        handle.write(text[: len(text) // 2])
        handle.flush()
        if behaviour == "raise":
            raise RuntimeError(f"{name} broke mid-write")
        if behaviour == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        handle.write(text[len(text) // 2 :])
    passed = behaviour != "fail_contract"
    finding = Finding(id="L9", title="toy check", passed=passed, measured=0.9, threshold=0.7)
    return StageResult(rows={name: 1}, findings=[finding])


#: A stand-in select stage writing a synthetic parent sample (toy_stages/parent.py).
PARENT_STAGE = Stage("select", (), ("seed", "selection"), "toy_stages.parent", "synthetic parent sample")

TOY_STAGES = (
    Stage("first", (), ("seed",), "toy_stages.first", "first toy stage"),
    Stage("second", ("first",), ("seed", "train"), "toy_stages.second", "second toy stage"),
)


def run_counting(ctx: StageContext) -> StageResult:
    """A resumable toy: counts its attempts in ctx.scratch and fails on the first attempt."""
    counter = ctx.scratch / "attempts.txt"
    attempts = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(attempts))
    if attempts == 1:
        raise RuntimeError("first attempt fails")
    (ctx.out / "attempts.txt").write_text(str(attempts))
    return StageResult(rows={"attempts": attempts})
