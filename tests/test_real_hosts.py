"""Arcs injected into the 46 real DES LRG cutouts (data/real/des_lrg_hosts), converted into the folder provider's
layout, pass L8 as the stamps' judge checks it; a stamp whose record names another host fails L8 and only L8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, spec_data

from darkhalo.audit.judges import point_source_test, psf_finding, record_problems, written_stamp_problems
from darkhalo.expansion import Expansion, expand_hosts, host_frame
from darkhalo.injection import Rendering, inject_batch
from darkhalo.spec import GenerationSpec, spec_from_dict
from darkhalo.stamps import decode_images
from darkhalo.surveys.cutout_fits import FolderCutoutProvider, read_cutout_fits
from darkhalo.surveys.legacy import read_catalog
from darkhalo.surveys.npz_cutouts import SURVEY_PSFSIZE, convert_real_input
from data_contracts.invariants import l7_realistic_arcs, l8_stamp_integrity
from data_contracts.survey import KEY

DES = REPO / "data" / "real" / "des_lrg_hosts" / "lrg_hosts.yaml"
N_HOSTS = 46


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """The 46 DES hosts as cutout FITS and host rows (the whole conversion: ~6 s, its setup time)."""
    out = tmp_path_factory.mktemp("des_hosts")
    hosts, written, refused = convert_real_input(DES, out, SURVEY_PSFSIZE)
    assert len(hosts) == len(written) == N_HOSTS and not refused
    return out, hosts


@pytest.fixture(scope="module")
def injected(converted) -> tuple[GenerationSpec, pd.DataFrame, pd.DataFrame]:
    """The embedded spec, the manifest rows of the hosts (alternately positive and control) and their stamps."""
    out, _ = converted
    spec = spec_from_dict(spec_data("embedded"))
    expansion = Expansion.of(spec)
    catalog = read_catalog(out / "hosts.parquet").assign(KNOWN_LENS=False)
    hosts = host_frame(catalog, expansion=expansion)
    hosts["role"] = np.where(np.arange(len(hosts)) % 2 == 0, "positive", "control")
    rows = expand_hosts(hosts, expansion=expansion)
    stamps = inject_batch(rows, FolderCutoutProvider(out / "cutouts"), rendering=Rendering.of(spec)).to_pandas()
    return spec, rows, stamps


def verdicts(spec: GenerationSpec, rows: pd.DataFrame, stamps: pd.DataFrame, provider) -> dict[str, bool]:
    """L3, L7 and L8 as the stamps' judge gives them (darkhalo.audit.judges), on stamps held in memory: every
    record against its manifest row, every stamp against its cutout fetched again and its arc rendered again."""
    joined = stamps[["stamp_id", "image"]].merge(rows, on="stamp_id", how="left", validate="1:1")
    exact = written_stamp_problems(joined, spec, provider)
    keys = record_problems(stamps, rows)
    l8 = l8_stamp_integrity.check(
        [
            l8_stamp_integrity.check_recorded(exact["stamp_id"].to_numpy(), exact["problem"].to_numpy()),
            l8_stamp_integrity.check_recorded(keys["stamp_id"].to_numpy(), keys["problem"].to_numpy(), "records"),
            l8_stamp_integrity.check_point_source(
                *point_source_test(spec, float(np.median(stamps["psfsize_r"]))), spec.invariants.L8
            ),
            l8_stamp_integrity.check_unique_rows(stamps),
        ]
    )
    positives = stamps[stamps["label"] == 1]
    l7 = l7_realistic_arcs.check(spec.source.brightness, positives["arc_snr"].to_numpy(), spec.invariants.L7)
    return {"L3": psf_finding(spec).passed, "L7": l7.passed, "L8": l8.passed}


def test_the_46_des_hosts_convert_with_their_measured_colours(converted) -> None:
    _, hosts = converted
    assert hosts["OBJID"].tolist() == list(range(N_HOSTS)) and (hosts["RELEASE"] == 0).all()  # placeholders
    mag = {b: 22.5 - 2.5 * np.log10(hosts[f"FLUX_{b}"].to_numpy()) for b in "GRZ"}
    assert 19.5 < np.median(mag["R"]) < 21 and 0.9 < np.median(mag["R"] - mag["Z"]) < 1.4  # LRGs at z ~ 0.5
    assert 1.5 < np.median(mag["G"] - mag["R"]) < 2.2


def test_arcs_in_real_des_hosts_pass_l8(converted, injected) -> None:
    out, _ = converted
    spec, rows, stamps = injected
    provider = FolderCutoutProvider(out / "cutouts")
    assert verdicts(spec, rows, stamps, provider) == {"L3": True, "L7": True, "L8": True}
    images = decode_images(stamps["image"].tolist(), spec.stamps.size)
    files = [out / "cutouts" / f"{r.RELEASE}_{r.BRICKID}_{r.OBJID}.fits" for r in stamps.itertuples()]
    cutouts = np.stack([read_cutout_fits(path).image for path in files])
    positive = stamps["label"].to_numpy() == 1
    assert positive.sum() == (~positive).sum() == N_HOSTS // 2  # one grid config per positive host
    assert np.array_equal(images[~positive], cutouts[~positive])  # controls: the converted cutouts, bit for bit
    recorded = stamps.loc[positive, ["arc_flux_g", "arc_flux_r", "arc_flux_z"]].to_numpy()
    assert np.allclose((images[positive] - cutouts[positive]).sum(axis=(2, 3)), recorded, rtol=1e-3)
    assert (recorded > 0).all()


def test_a_stamp_whose_record_names_another_host_fails_l8_alone(converted, injected) -> None:
    out, _ = converted
    spec, rows, stamps = injected
    corrupt = stamps.copy()
    other = corrupt.index[corrupt["host_id"] != corrupt.loc[0, "host_id"]][0]
    corrupt.loc[0, ["host_id", *KEY]] = corrupt.loc[other, ["host_id", *KEY]].to_numpy()
    provider = FolderCutoutProvider(out / "cutouts")
    assert verdicts(spec, rows, corrupt, provider) == {"L3": True, "L7": True, "L8": False}
