"""Pre-flight: the lessons a spec can be judged on before anything expensive runs.

From a spec and a sample of its parent sample (drawn from the survey: the mock catalog's first
block(s), or the real catalog files, cut with the selection's pandas mirror in data_contracts), the
grid is expanded exactly as the manifest stage would expand it and L1 (unpaired controls) and L2
(resolvable injections, from each host's own PSFSIZE_R) are judged; L3 compares the spec's injection
PSF with the survey PSF at the sample's median r-band FWHM. Seconds, not hours.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from darkhalo.expansion import expand_hosts, host_frame
from darkhalo.injection import injection_kernels
from darkhalo.lensing.psf import wing_deficits
from darkhalo.spec import GenerationSpec, LegacySurvey
from darkhalo.surveys import mock
from data_contracts.findings import Finding
from data_contracts.invariants import l1_unpaired_controls, l2_resolvable_injections, l3_psf_wings
from data_contracts.parent_sample import cuts_mask

#: Parent hosts the pre-flight expands (enough for a share to +-1 %).
SAMPLE_HOSTS = 5000


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


def psf_wings(spec: GenerationSpec, fwhm: float) -> pd.DataFrame:
    """The L3 measures (1 - EE at 2 x FWHM and at 3") of the spec's injection PSF and of the survey
    PSF, r band, at one FWHM (arcsec): one row with l3_psf_wings.NEEDS columns. The kernels are the
    inject stage's own (darkhalo.injection.injection_kernels), so pre-flight judges what inject uses."""
    row = {}
    for name, model in (("psf", spec.psf.model), ("survey", "survey")):
        kernels = injection_kernels(model, np.full((1, 3), fwhm), np.full((1, 3), spec.psf.moffat_beta), spec)
        two_fwhm, three = wing_deficits(kernels[:, 1], spec.stamps.pixel_scale, fwhm)[0].tolist()
        row |= {f"{name}_wing_2fwhm": two_fwhm, f"{name}_wing_3as": three}
    return pd.DataFrame([row])


def expansion_findings(spec: GenerationSpec, parent: pd.DataFrame) -> list[Finding]:
    """L1 and L2 on the manifest this spec would expand from ``parent``."""
    if parent.empty:
        raise ValueError(f"pre-flight: the {spec.selection.variant} cuts select no host from the survey sample")
    manifest = expand_hosts(host_frame(parent, spec), spec)
    return [
        l1_unpaired_controls.check(manifest),
        l2_resolvable_injections.check(manifest[manifest["label"] == 1], spec.invariants.L2),
    ]


def psf_finding(spec: GenerationSpec, fwhm: float) -> Finding:
    """L3: the spec's injection PSF against the survey PSF at an r-band FWHM (arcsec)."""
    return l3_psf_wings.check(psf_wings(spec, fwhm), spec.invariants.L3)


def preflight(spec: GenerationSpec, parent: pd.DataFrame | None = None) -> list[Finding]:
    """L1, L2 and L3 judged from the spec and (a sample of) its parent sample."""
    parent = parent_sample(spec) if parent is None else parent
    return [*expansion_findings(spec, parent), psf_finding(spec, float(np.median(parent["PSFSIZE_R"])))]
