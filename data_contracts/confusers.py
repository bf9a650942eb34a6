"""The confuser classes: the non-lenses that set a real survey's false-positive rate (L11).

Every stamp records its host's class: ``PLAIN`` for a smooth host, else one of ``CLASSES``. The
mock sky draws them (darkhalo.surveys.confusers); a real sky's hosts carry ``UNLABELLED``.
"""

from __future__ import annotations

#: Confuser classes, in the order the mock sky draws them from one uniform number per host.
CLASSES = ("spiral", "ring", "edge_on_disk", "merger", "blue_companions", "star_artifact")
PLAIN = "none"
UNLABELLED = "unlabelled"
#: Every value a stamp's ``confuser`` column may take.
VALUES = (PLAIN, *CLASSES, UNLABELLED)
