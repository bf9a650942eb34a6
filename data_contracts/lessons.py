"""The lessons of the Gen 1 post-mortem (L1-L4) and the invariants added since (L5-L14).

This table is the one place a lesson is written down; each invariant's check lives in
``data_contracts.invariants`` under the same id and cites this text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lesson:
    """One lesson: its id, a short title and what the invariant checks."""

    id: str
    title: str
    checks: str


LESSONS: dict[str, Lesson] = {
    lesson.id: lesson
    for lesson in (
        Lesson(
            "L1",
            "unpaired controls",
            "no host galaxy is both a positive host and a control (per split and across splits)",
        ),
        Lesson(
            "L2",
            "resolvable injections",
            "share of positives with theta_E / PSF_FWHM(host, r) >= 0.5 meets the spec's minimum; "
            "computed from each host's real PSFSIZE_R, not from the grid alone",
        ),
        Lesson(
            "L3",
            "realistic PSF wings",
            "the injection PSF's encircled-energy deficit beyond 2 x PSFSIZE and 3\" falls short of real "
            "DECam PSFs' (at their PSFSIZE) by at most the tolerance; a Gaussian fails",
        ),
        Lesson(
            "L4",
            "operational reporting",
            "every evaluation reports FPR at completeness {0.99,0.95,0.90,0.85,0.80,0.70} and "
            "completeness at FPR {1e-2,1e-3,1e-4,1e-5} with counts and 95 % intervals; an FPR the "
            "negatives cannot resolve is reported as unresolved; AUROC is never the headline",
        ),
        Lesson(
            "L5",
            "sky-disjoint splits",
            "splits assigned by sky region (HEALPix of the host), never re-shuffled; no host or region in two splits",
        ),
        Lesson(
            "L6",
            "host matching",
            "positive and control hosts come from the same distribution of magnitude, colour, PSF "
            "size and depth (two-sample statistics bounded)",
        ),
        Lesson(
            "L7",
            "realistic, visible arcs",
            "source brightness from a source-population prior; each stamp records its arc's "
            "integrated S/N; shares of invisible and of implausibly bright arcs bounded",
        ),
        Lesson(
            "L8",
            "stamp integrity",
            "shape, band order, finite pixels; controls bit-identical to their cutouts; positives "
            "differ from their cutout by exactly the recorded arc; a point source through the PSF "
            "lands where intended and keeps its flux; arcs rendered again at twice the resolution "
            "agree (converged numerics); no duplicated (host, config) rows",
        ),
        Lesson(
            "L9",
            "no shortcut",
            "a classifier on the central core pixels alone separates positives from controls within the AUC "
            "bound, or, by the 95 % lower bound of their AUC difference, no further than the same classifier on "
            "the ring around the core, where arcs put their light; unlensed blobs of an arc's flux are flagged, "
            "by the 95 % lower bound of their rate, at most the allowed multiple of the controls' FPR at each "
            "operating threshold",
        ),
        Lesson(
            "L10",
            "no label leakage",
            "model inputs are pixels (and whitelisted observing conditions at most), never "
            "injection parameters, arc S/N or anything derived from the label",
        ),
        Lesson(
            "L11",
            "hard negatives present",
            "the test controls hold every confuser class the spec enables (spirals, rings, edge-on dusty discs, "
            "mergers and tidal features, blue companions, bright-star artifacts), each on enough distinct hosts to "
            "resolve its own FPR at 1e-2, with the confuser share at least the spec's minimum, and the training "
            "controls hold every class too: a low FPR cannot come from a sky of smooth ellipticals",
        ),
        Lesson(
            "L12",
            "real-data recall reported",
            "every evaluation that prints simulated completeness also prints recall on at least one set of real "
            "lenses at the same thresholds, with its interval; the real-negative flag rate beside the simulated FPR "
            "where a non-lens set is given: the sim-to-real gap is always in view",
        ),
        Lesson(
            "L13",
            "complete scan",
            "the search scores every parent-sample host exactly once or lists it as unscored with its reason; "
            "no host outside the parent sample is a candidate",
        ),
        Lesson(
            "L14",
            "sealed truth",
            "the mock sky's own lenses (its truth table) are read by no stage but the scan, which grades the search "
            "against them, and the audit: no stage that selects, stamps, trains or evaluates records them in its reads",
        ),
    )
}
