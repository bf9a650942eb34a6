"""Thresholds of the invariants, as they appear in a spec's ``invariants`` section.

Each invariant has a model with its bounds and an optional ``waiver``: a spec may waive an
invariant only with a written reason, and the audit shows that reason beside the verdict.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=20)]


class _Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    waiver: Reason | None = Field(
        None, description="why this invariant is waived for this spec (at least 20 characters)"
    )


class L1Thresholds(_Thresholds):
    """Unpaired controls: no thresholds, a host is either a positive host or a control."""


class L2Thresholds(_Thresholds):
    """Resolvable injections: theta_E / PSFSIZE_R(host) >= ``min_ratio`` for a share >= ``min_share``."""

    min_ratio: float = Field(0.5, gt=0, le=5, description="theta_E / PSF FWHM (r band) to count as resolved")
    min_share: float = Field(0.8, ge=0, le=1, description="minimum share of positives that are resolved")


class L3Thresholds(_Thresholds):
    """PSF wings: the injection PSF's light beyond 2 x FWHM and beyond 3" against the survey PSF's."""

    rel_tolerance: float = Field(
        0.5, gt=0, lt=1, description="allowed relative shortfall of the injection PSF's wing light"
    )


class L4Thresholds(_Thresholds):
    """Operational reporting: the operating points themselves are fixed by the lesson."""


class L5Thresholds(_Thresholds):
    """Sky-disjoint splits: no thresholds, a host and its HEALPix region live in one split."""


class L6Thresholds(_Thresholds):
    """Host matching: two-sample KS statistic between positive and control hosts, per split."""

    max_ks: float = Field(0.1, gt=0, le=1, description="largest allowed KS statistic per property")


class L7Thresholds(_Thresholds):
    """Realistic, visible arcs: bounded shares of invisible and of implausibly bright arcs."""

    min_visible_snr: float = Field(5.0, gt=0, description="integrated arc S/N below which an arc is invisible")
    max_invisible_share: float = Field(0.3, ge=0, le=1)
    max_plausible_snr: float = Field(
        500.0, gt=0, description="integrated arc S/N above which an arc is implausibly bright"
    )
    max_bright_share: float = Field(0.05, ge=0, le=1)


class L8Thresholds(_Thresholds):
    """Stamp integrity: point-source position and flux tolerances of the injection."""

    position_tolerance_pix: float = Field(0.05, gt=0, le=1)
    flux_rel_tolerance: float = Field(1e-3, gt=0, le=0.1)


class L9Thresholds(_Thresholds):
    """No shortcut: core-pixel classifier AUC and unlensed-blob flag rate bounds."""

    core_size_pix: int = Field(8, ge=2, le=32, description="side of the central box the probe sees")
    max_core_auc: float = Field(0.7, gt=0.5, le=1)
    max_blob_rate_ratio: float = Field(
        2.0, ge=1, description="blob flag rate allowed, as a multiple of the control FPR"
    )


class L10Thresholds(_Thresholds):
    """No label leakage: model inputs are pixels plus at most these observing conditions."""

    allowed_conditions: tuple[str, ...] = Field(
        (), description="catalog columns the model may see beside the pixels (observing conditions)"
    )


class InvariantThresholds(BaseModel):
    """The ``invariants`` section of a spec: one entry per lesson, all with defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    L1: L1Thresholds = L1Thresholds()
    L2: L2Thresholds = L2Thresholds()
    L3: L3Thresholds = L3Thresholds()
    L4: L4Thresholds = L4Thresholds()
    L5: L5Thresholds = L5Thresholds()
    L6: L6Thresholds = L6Thresholds()
    L7: L7Thresholds = L7Thresholds()
    L8: L8Thresholds = L8Thresholds()
    L9: L9Thresholds = L9Thresholds()
    L10: L10Thresholds = L10Thresholds()

    def waiver(self, lesson_id: str) -> str | None:
        """The waiver reason the spec gives for ``lesson_id``, or None."""
        return getattr(self, lesson_id).waiver
