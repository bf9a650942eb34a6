"""Pre-flight: the lessons a spec can be judged on before anything expensive runs.

From a spec and a sample of its parent sample (drawn from the survey: the mock catalog's first
block(s), or the real catalog files, cut with the selection's pandas mirror in data_contracts), the
grid is expanded exactly as the manifest stage would expand it and L1 (unpaired controls), L2
(resolvable injections, from each host's own PSFSIZE_R) and L11 (hard negatives: confuser classes in the
test and training controls, counts scaled to the whole survey) are judged; L3 measures the spec's injection
PSF against real DECam PSFs (the same judge as the inject stage's); L12 asks the spec for a real lens set to
score beside the simulation. Seconds, not hours. The same
sample, scaled to the whole catalog, forecasts the test split and the FPR targets it will resolve.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from darkhalo.audit.judges import hard_negatives_finding, psf_finding
from darkhalo.expansion import Expansion, expand_hosts, host_frame
from darkhalo.spec import GenerationSpec, LegacySurvey
from darkhalo.surveys import mock
from data_contracts.findings import Finding
from data_contracts.invariants import l1_unpaired_controls, l2_resolvable_injections, l12_real_recall
from data_contracts.metrics import FPR_TARGETS, sample_needed
from data_contracts.parent_sample import cuts_mask

#: Parent hosts the pre-flight expands (enough for a share to +-1 %).
SAMPLE_HOSTS = 5000
#: The spec sections the pre-flight reads: the survey and cuts (its sample), the manifest's
#: expansion, the injection PSF (L3), L2's and L3's thresholds and the real sets (L12).
SECTIONS = (
    "seed",
    "survey",
    "selection",
    "grid",
    "controls",
    "splits",
    "source",
    "stamps",
    "psf",
    "invariants.L2",
    "invariants.L3",
    "invariants.L11",
    "evaluate.min_expected_false_positives",
    "evaluate.real_sets",
)


def sampled_parent(spec: GenerationSpec, n_hosts: int) -> tuple[pd.DataFrame, int]:
    """Up to ``n_hosts`` parent-sample rows (the pandas cuts, catalog order) and the catalog rows
    scanned to find them."""
    selection = spec.selection.model_dump()
    chosen: list[pd.DataFrame] = []
    scanned = 0
    for catalog in _catalog_chunks(spec):
        chosen.append(catalog[cuts_mask(catalog, selection)])
        scanned += len(catalog)
        if sum(map(len, chosen)) >= n_hosts:
            break
    parent = pd.concat(chosen, ignore_index=True)
    if len(parent) > n_hosts:  # the scanned rows in proportion to the hosts kept
        scanned = round(scanned * n_hosts / len(parent))
        parent = parent.head(n_hosts)
    parent["KNOWN_LENS"] = False  # pre-flight judges the recipe; known lenses are a handful of hosts
    return parent, scanned


def planned_manifest(spec: GenerationSpec, parent: pd.DataFrame) -> pd.DataFrame:
    """The manifest rows the spec's manifest stage expands from ``parent`` (in pandas)."""
    expansion = Expansion.of(spec)
    return expand_hosts(host_frame(parent, expansion=expansion), expansion=expansion)


def catalog_rows(spec: GenerationSpec) -> int:
    """Rows of the spec's whole survey catalog (from file headers for real catalogs)."""
    if not isinstance(spec.survey, LegacySurvey):
        return spec.survey.n_objects
    from darkhalo.surveys.legacy import catalog_paths, count_rows

    return sum(count_rows(path) for path in catalog_paths(spec.survey.catalogs))


@dataclass(frozen=True)
class TestSplitForecast:
    """The test split the spec will make, extrapolated from the pre-flight's sample to the whole survey,
    and the FPR targets it will resolve (distinct control hosts x FPR >= min_expected_false_positives)."""

    catalog_rows: int
    parent_hosts: int
    test_positives: int
    test_control_hosts: int
    min_expected_fp: float

    def resolves(self, fpr: float) -> bool:
        return self.test_control_hosts >= sample_needed(self.min_expected_fp, fpr)

    def summary(self) -> str:
        """One line: the forecast counts, the FPR targets resolved and those not (with the hosts they need)."""
        resolved = [f"{f:g}" for f in FPR_TARGETS if self.resolves(f)]
        needs = {f: sample_needed(self.min_expected_fp, f) for f in FPR_TARGETS}
        unresolved = [f"{f:g} (needs {needs[f]:,})" for f in FPR_TARGETS if not self.resolves(f)]
        return (
            f"test split forecast: ~{self.test_control_hosts:,} distinct control hosts and ~{self.test_positives:,} "
            f"positives (of ~{self.parent_hosts:,} parent hosts in {self.catalog_rows:,} catalog rows); "
            f"resolves FPR {', '.join(resolved) or 'none'}; unresolved: {', '.join(unresolved) or 'none'}"
        )


def forecast_test_split(spec: GenerationSpec, n_hosts: int = SAMPLE_HOSTS) -> TestSplitForecast:
    """The expected test split of ``spec`` from a sample of its parent sample, scaled to the whole catalog."""
    parent, scanned = sampled_parent(spec, n_hosts)
    manifest = planned_manifest(spec, parent)
    test = manifest[manifest["split"] == "test"]
    scale = catalog_rows(spec) / max(scanned, 1)
    return TestSplitForecast(
        catalog_rows=catalog_rows(spec),
        parent_hosts=round(len(parent) * scale),
        test_positives=round(int((test["label"] == 1).sum()) * scale),
        test_control_hosts=round(test.loc[test["label"] == 0, "host_id"].nunique() * scale),
        min_expected_fp=spec.evaluate.min_expected_false_positives,
    )


def _catalog_chunks(spec: GenerationSpec):
    if isinstance(spec.survey, LegacySurvey):
        from darkhalo.surveys.legacy import catalog_paths, read_catalog

        for path in catalog_paths(spec.survey.catalogs):
            yield read_catalog(path)
    else:
        for block in range(mock.n_blocks(spec.survey)):
            yield mock.mock_catalog(spec.survey, spec.seed, block)


def expansion_findings(spec: GenerationSpec, parent: pd.DataFrame, scale: float = 1.0) -> list[Finding]:
    """L1, L2 and L11 on the manifest this spec would expand from ``parent``, a sample of ``1 / scale`` of
    the whole parent sample (L11 counts hosts, so its counts are scaled)."""
    if parent.empty:
        raise ValueError(f"pre-flight: the {spec.selection.variant} cuts select no host from the survey sample")
    manifest = planned_manifest(spec, parent)
    return [
        l1_unpaired_controls.check(manifest),
        l2_resolvable_injections.check(manifest[manifest["label"] == 1], spec.invariants.L2),
        hard_negatives_finding(manifest, spec, scale),
    ]


def real_sets_finding(spec: GenerationSpec) -> Finding:
    """L12 from the spec alone: it declares a real lens set (evaluate.real_sets)."""
    return l12_real_recall.check_spec({s.name: s.label for s in spec.evaluate.real_sets})


def survey_sample(spec: GenerationSpec) -> tuple[pd.DataFrame, float]:
    """The pre-flight's sample of the parent sample and the whole survey's size over the rows it scanned."""
    parent, scanned = sampled_parent(spec, SAMPLE_HOSTS)
    return parent, catalog_rows(spec) / max(scanned, 1)


def preflight(spec: GenerationSpec, parent: pd.DataFrame | None = None) -> list[Finding]:
    """L1, L2, L3, L11 and L12 judged from the spec and its parent sample (default: ``survey_sample``, its
    counts scaled to the whole survey)."""
    sample = survey_sample(spec) if parent is None else (parent, 1.0)
    return [*expansion_findings(spec, *sample), psf_finding(spec), real_sets_finding(spec)]
