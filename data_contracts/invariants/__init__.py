"""The invariants, one module per lesson (``l1_unpaired_controls.py`` ... ``l10_label_leakage.py``).

Each module cites its lesson from ``data_contracts.lessons`` and exposes ``check(...) -> Finding``
over plain artifacts (pandas frames, arrays, recorded measures) and thresholds from
``data_contracts.thresholds``; none of them imports darkhalo.
"""
