"""Pre-flight: the lessons a spec can be judged on before anything expensive runs.

From a spec and a sample of its parent sample (drawn from the survey: the mock catalog's first
block(s), or the real catalog files, cut with the selection's pandas mirror in data_contracts), the
grid is expanded exactly as the manifest stage would expand it and L1 (unpaired controls) and L2
(resolvable injections, from each host's own PSFSIZE_R) are judged; L3 measures the spec's injection
PSF against real DECam PSFs (the same judge as the inject stage's). Seconds, not hours.
"""

from __future__ import annotations

import pandas as pd

from darkhalo.audit.judges import psf_finding
from darkhalo.expansion import Expansion, expand_hosts, host_frame
from darkhalo.spec import GenerationSpec, LegacySurvey
from darkhalo.surveys import mock
from data_contracts.findings import Finding
from data_contracts.invariants import l1_unpaired_controls, l2_resolvable_injections
from data_contracts.parent_sample import cuts_mask

#: Parent hosts the pre-flight expands (enough for a share to +-1 %).
SAMPLE_HOSTS = 5000
#: The spec sections the pre-flight reads: the survey and cuts (its sample), the manifest's
#: expansion, the injection PSF (L3) and L2's and L3's thresholds.
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
)


def parent_sample(spec: GenerationSpec, n_hosts: int = SAMPLE_HOSTS) -> pd.DataFrame:
    """Up to ``n_hosts`` rows of the spec's parent sample, selected in pandas from the survey."""
    selection = spec.selection.model_dump()
    chosen: list[pd.DataFrame] = []
    for catalog in _catalog_chunks(spec):
        chosen.append(catalog[cuts_mask(catalog, selection)])
        if sum(map(len, chosen)) >= n_hosts:
            break
    parent = pd.concat(chosen, ignore_index=True).head(n_hosts)
    parent["KNOWN_LENS"] = False  # pre-flight judges the recipe; known lenses are a handful of hosts
    return parent


def _catalog_chunks(spec: GenerationSpec):
    if isinstance(spec.survey, LegacySurvey):
        from darkhalo.surveys.legacy import catalog_paths, read_catalog

        for path in catalog_paths(spec.survey.catalogs):
            yield read_catalog(path)
    else:
        for block in range(mock.n_blocks(spec.survey)):
            yield mock.mock_catalog(spec.survey, spec.seed, block)


def expansion_findings(spec: GenerationSpec, parent: pd.DataFrame) -> list[Finding]:
    """L1 and L2 on the manifest this spec would expand from ``parent``."""
    if parent.empty:
        raise ValueError(f"pre-flight: the {spec.selection.variant} cuts select no host from the survey sample")
    expansion = Expansion.of(spec)
    manifest = expand_hosts(host_frame(parent, expansion=expansion), expansion=expansion)
    return [
        l1_unpaired_controls.check(manifest),
        l2_resolvable_injections.check(manifest[manifest["label"] == 1], spec.invariants.L2),
    ]


def preflight(spec: GenerationSpec, parent: pd.DataFrame | None = None) -> list[Finding]:
    """L1, L2 and L3 judged from the spec and (a sample of) its parent sample."""
    parent = parent_sample(spec) if parent is None else parent
    return [*expansion_findings(spec, parent), psf_finding(spec)]
