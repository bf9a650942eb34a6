"""Thresholds of the invariants, as they appear in a spec's ``invariants`` section.

Each invariant has a model with its bounds and an optional ``waiver``: a spec may waive an
invariant only with a written reason, and the audit shows that reason beside the verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from data_contracts.findings import Finding

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=20)]
#: The pydantic config of every spec section: unknown keys refused, strict types (a number or a boolean only as
#: itself, never from a string such as "7" or "yes", nor a boolean as a number), finite floats, immutable. A field
#: whose YAML form is a list or a string (a tuple, a path) sets ``strict=False`` for its container alone.
SPEC_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class _Thresholds(BaseModel):
    model_config = SPEC_CONFIG

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
    """PSF wings: the injection PSF's light beyond 2 x PSFSIZE and beyond 3" against real DECam PSFs'."""

    rel_tolerance: float = Field(
        0.5, gt=0, lt=1, description="allowed median relative shortfall of the injection PSF's wing light"
    )
    bands: tuple[Literal["g", "r", "z"], ...] = Field(
        ("r",), min_length=1, strict=False, description="bands judged (every band's shortfall is shown)"
    )


class L4Thresholds(_Thresholds):
    """Operational reporting: the operating points themselves are fixed by the lesson."""


class L5Thresholds(_Thresholds):
    """Sky-disjoint splits: no thresholds, a host and its HEALPix region live in one split."""


class L6Thresholds(_Thresholds):
    """Host matching: two-sample KS statistic between positive and control hosts, per split."""

    max_ks: float = Field(0.1, gt=0, le=1, description="largest allowed KS statistic per property")
    family_alpha: float = Field(
        0.01, gt=0, lt=1, description="family-wise level of the KS critical value that bounds small splits"
    )


class L7Thresholds(_Thresholds):
    """Realistic, visible arcs: bounded shares of invisible and of implausibly bright arcs."""

    min_visible_snr: float = Field(5.0, gt=0, description="integrated arc S/N below which an arc is invisible")
    max_invisible_share: float = Field(0.3, ge=0, le=1)
    max_plausible_snr: float = Field(
        500.0, gt=0, description="integrated arc S/N above which an arc is implausibly bright"
    )
    max_bright_share: float = Field(0.05, ge=0, le=1)

    @model_validator(mode="after")
    def _visible_below_bright(self) -> L7Thresholds:
        if not self.min_visible_snr < self.max_plausible_snr:
            raise ValueError(
                f"min_visible_snr ({self.min_visible_snr:g}) must be below max_plausible_snr "
                f"({self.max_plausible_snr:g}): no arc would be both visible and plausible"
            )
        return self


class L8Thresholds(_Thresholds):
    """Stamp integrity: point-source position and flux tolerances of the injection, and how far an arc
    may move when rendered again at twice the resolution (its numerics converged)."""

    position_tolerance_pix: float = Field(0.05, gt=0, le=1)
    flux_rel_tolerance: float = Field(1e-3, gt=0, le=0.1)
    convergence_l1: float = Field(
        0.01,
        gt=0,
        le=0.5,
        description="largest L1 / flux between an arc and the same arc rendered at twice the resolution",
    )
    convergence_magnification: float = Field(
        0.01, gt=0, le=0.5, description="largest relative change of the magnification at twice the resolution"
    )


class L9Thresholds(_Thresholds):
    """No shortcut: core-pixel classifier AUC and unlensed-blob flag rate bounds."""

    core_size_pix: int = Field(8, ge=2, le=32, description="side of the central box the probe sees")
    max_core_auc: float = Field(0.7, gt=0.5, le=1)
    max_blob_rate_ratio: float = Field(
        2.0, ge=1, description="blob flag rate (its 95 % lower bound) allowed, as a multiple of the control FPR"
    )
    core_bound_rises_to_ring: bool = Field(
        True, description="the core AUC bound rises to the ring probe's AUC (arcs near the PSF size light the core)"
    )


class L10Thresholds(_Thresholds):
    """No label leakage: model inputs are pixels plus at most these observing conditions."""

    allowed_conditions: tuple[str, ...] = Field(
        (), strict=False, description="catalog columns the model may see beside the pixels (observing conditions)"
    )


class L11Thresholds(_Thresholds):
    """Hard negatives present: each enabled confuser class resolves its own FPR at ``resolve_fpr`` among the
    test controls (the spec's evaluate.min_expected_false_positives), and confusers are ``min_share`` of them."""

    resolve_fpr: float = Field(1e-2, gt=0, lt=1, description="FPR each class's test control hosts must resolve")
    min_share: float = Field(0.1, ge=0, le=1, description="minimum share of test control hosts with a confuser")


class L12Thresholds(_Thresholds):
    """Real-data recall reported: a real lens set counts once at least ``min_real_lenses`` of its images are scored."""

    min_real_lenses: int = Field(
        10, ge=1, description="scored real lens images a set needs for its recall to count (fewer: no evidence)"
    )


class L13Thresholds(_Thresholds):
    """Complete scan: no thresholds, every parent host is scored once or listed unscored."""


class L14Thresholds(_Thresholds):
    """Sealed truth: no thresholds, the truth table is read by the scan and the audit only."""


class InvariantThresholds(BaseModel):
    """The ``invariants`` section of a spec: one entry per lesson, all with defaults."""

    model_config = SPEC_CONFIG

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
    L11: L11Thresholds = L11Thresholds()
    L12: L12Thresholds = L12Thresholds()
    L13: L13Thresholds = L13Thresholds()
    L14: L14Thresholds = L14Thresholds()

    def waiver(self, lesson_id: str) -> str | None:
        """The waiver reason the spec gives for ``lesson_id`` (None for no waiver or no such lesson)."""
        section = getattr(self, lesson_id, None) if lesson_id in type(self).model_fields else None
        return section.waiver if section is not None else None

    def judged(self, findings: Iterable[Finding]) -> list[Finding]:
        """The findings with this spec's waivers attached: the one place a waiver takes effect."""
        return [finding.waived(self.waiver(finding.id)) for finding in findings]
