"""The audit stage: the run folder's chain checked and every installed artifact judged again against the spec
(darkhalo.audit.audit), written as ``audit/audit.json`` and ``audit/audit.md``; its findings are the stage's
contract. The runner verified every upstream output before the stage started, so the chain it records is whole."""

from __future__ import annotations

from darkhalo.audit.audit import audit_run, write_audit
from darkhalo.stages.base import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    audit = audit_run(ctx.run_dir, ctx.spec)
    write_audit(audit, ctx.out)
    return StageResult(
        rows={"findings": len(audit.findings)},
        findings=list(audit.findings),
        measured={"failed": audit.failed, "not_evaluated": audit.not_evaluated, "chain": audit.chain_summary()},
    )
