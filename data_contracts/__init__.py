"""Data contracts for darkhalo: pandera models of each tabular artifact and the lessons L1-L10 as
named, individually testable invariants.

This package judges artifacts and specs; it never imports ``darkhalo`` (the dependency runs one
way: stages and the audit use the contracts, never the reverse).
"""

from data_contracts.findings import Finding
from data_contracts.lessons import LESSONS, Lesson

__all__ = ["LESSONS", "Finding", "Lesson"]
