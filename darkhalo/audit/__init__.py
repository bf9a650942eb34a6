"""Judging artifacts against a spec: the per-artifact judges (a stage's gate and the audit's), the
pre-flight of a spec alone, and the audit of a spec or a run folder."""
