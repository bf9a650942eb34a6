"""`spec check` refuses every value that would fail later: strings or booleans for numbers, strings or numbers for
booleans, NaN and inf, inverted ranges, priors outside the renderer's and the mock sky's domains, and splits that the
spec's own sky leaves (nearly) empty. Each row changes one field of specs/embedded.yaml; the error must name that
field and be the only problem listed."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SPECS, spec_data

from darkhalo.lensing.render import ArcParams
from darkhalo.sources import draw_source_parameters
from darkhalo.spec import MIN_SPLIT_HOSTS, GenerationSpec, SpecError, load_spec, spec_from_dict
from darkhalo.surveys import sky_lenses

NAN, INF = math.nan, math.inf


def _put(data: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """``data`` with ``value`` at the dotted ``path`` (``evaluate.real_sets[0].visible``; sections created)."""
    keys: list[str | int] = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
    node: Any = data
    for key in keys[:-1]:
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    node[keys[-1]] = value
    return data


def _problems(path: str, value: object) -> list[str]:
    """The problems `spec_from_dict` lists for specs/embedded.yaml with one field changed."""
    with pytest.raises(SpecError) as info:
        spec_from_dict(_put(spec_data(), path, value), source="specs/x.yaml")
    head, *problems = str(info.value).splitlines()
    assert head == "specs/x.yaml: invalid spec:"
    return problems


def _accepted(path: str, value: object) -> GenerationSpec:
    return spec_from_dict(_put(spec_data(), path, value))


def _spec_file(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    """specs/embedded.yaml with each (old, new) text edit, written to ``tmp_path``."""
    text = (SPECS / "embedded.yaml").read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def _file_refused(tmp_path: Path, *edits: tuple[str, str]) -> str:
    """The SpecError that loading specs/embedded.yaml with ``edits`` (as ``_spec_file``) raises."""
    with pytest.raises(SpecError) as info:
        load_spec(_spec_file(tmp_path, *edits))
    return str(info.value)


# --- strict scalars: a number only as a number, a boolean only as a boolean ----------------------------------------

COERCIONS = [
    # (path, value, pydantic's complaint): each class on more than one field, an invariant threshold among them
    ("seed", "7", "valid integer"),  # a numeric string for an int
    ("survey.n_objects", "1_000", "valid integer"),  # YAML 1.1's digit groups, a string in YAML 1.2
    ("train.epochs", 4.0, "valid integer"),  # a float for an int
    ("scan.grade_top", 2e2, "valid integer"),
    ("train.batch_size", True, "valid integer"),  # a boolean for an int
    ("train.lr", "1e-3", "valid number"),  # a numeric string for a float
    ("controls.fraction", "0.5", "valid number"),
    ("invariants.L2.min_share", "0.8", "valid number"),
    ("stamps.pixel_scale", True, "valid number"),  # a boolean for a float
    ("evaluate.confidence", False, "valid number"),
    ("train.compile", "true", "valid boolean"),  # a string for a boolean
    ("evaluate.probes", "yes", "valid boolean"),
    ("selection.extinction_corrected", "false", "valid boolean"),
    ("controls.hard_negatives_in_training", 1, "valid boolean"),  # a number for a boolean
    ("injection.poisson_noise", 0, "valid boolean"),
    ("invariants.L9.core_bound_rises_to_ring", 1, "valid boolean"),
]


@pytest.mark.parametrize(("path", "value", "complaint"), COERCIONS)
def test_a_scalar_of_the_wrong_kind_is_refused_naming_the_field(path: str, value: object, complaint: str) -> None:
    assert _problems(path, value) == [f"  - {path} = {value!r}: Input should be a {complaint}"]


def test_a_list_element_of_the_wrong_kind_is_refused_naming_its_index() -> None:
    assert _problems("survey.ra_range", ["150", 160]) == [
        "  - survey.ra_range[0] = '150': Input should be a valid number"
    ]
    assert _problems("grid.shear", [0.03, "0.1"]) == ["  - grid.shear[1] = '0.1': Input should be a valid number"]


def test_ints_for_floats_lists_for_tuples_and_strings_for_paths_and_names_still_load() -> None:
    assert _accepted("evaluate.min_expected_false_positives", 20).evaluate.min_expected_false_positives == 20.0
    assert _accepted("survey.ra_range", [150, 160.5]).survey.ra_range == (150.0, 160.5)
    assert _accepted("invariants.L3.bands", ["g", "r"]).invariants.L3.bands == ("g", "r")
    assert _accepted("psf", {"model": "pixelized", "psfex_dir": "data/psfex"}).psf.psfex_dir == Path("data/psfex")
    legacy = {"kind": "legacy", "catalogs": ["sweep.fits"], "cutouts": {"dir": "cutouts", "cache_dir": "cache"}}
    data = _put(spec_data(), "survey", legacy)
    data["evaluate"]["lens_prevalence"] = 0.001
    cutouts = spec_from_dict(data).survey.cutouts
    assert (cutouts.dir, cutouts.cache_dir) == (Path("cutouts"), Path("cache"))
    assert _accepted("train.precision", "bf16").train.precision == "bf16"


def test_a_quoted_number_in_a_spec_file_is_a_string_and_refused(tmp_path: Path) -> None:
    refused = _file_refused(tmp_path, ("lr: 1.0e-3", 'lr: "1.0e-3"'), ("seed: 7", "seed: '7'"))
    assert "seed = '7': Input should be a valid integer" in refused
    assert "train.lr = '1.0e-3': Input should be a valid number" in refused


# --- NaN and inf: refused wherever a float is taken ------------------------------------------------------------------

NON_FINITE = [
    # (path, value, where the problem is shown): fields whose bounds alone let inf (or NaN) through, and others
    ("evaluate.min_expected_false_positives", INF, "evaluate.min_expected_false_positives = inf"),
    ("train.grad_clip", INF, "train.grad_clip = inf"),
    ("invariants.L7.max_plausible_snr", INF, "invariants.L7.max_plausible_snr = inf"),
    ("invariants.L9.max_blob_rate_ratio", INF, "invariants.L9.max_blob_rate_ratio = inf"),
    ("selection.known_lens_radius_arcsec", NAN, "selection.known_lens_radius_arcsec = nan"),
    ("train.lr", NAN, "train.lr = nan"),
    ("survey.ra_range", [150.0, INF], "survey.ra_range[1] = inf"),
    ("source.g_minus_r", {"min": NAN, "max": 0.5}, "source.g_minus_r.min = nan"),
    ("evaluate.real_sets[0].visible.min", NAN, "evaluate.real_sets[0].visible.min = nan"),
]


@pytest.mark.parametrize(("path", "value", "shown"), NON_FINITE)
def test_nan_and_inf_are_refused_naming_the_field(path: str, value: object, shown: str) -> None:
    assert _problems(path, value) == [f"  - {shown}: Input should be a finite number"]


def test_yaml_inf_and_nan_are_refused_from_a_file(tmp_path: Path) -> None:
    grad_clip = ("  epochs: 4\n", "  epochs: 4\n  grad_clip: .inf\n")
    refused = _file_refused(tmp_path, grad_clip, ("min: 2.0}", "min: .nan}"))
    assert "train.grad_clip = inf: Input should be a finite number" in refused
    assert "evaluate.real_sets[0].visible.min = nan: Input should be a finite number" in refused


# --- domains: inverted ranges, priors outside what the renderer and the mock sky can draw ---------------------------

DOMAINS = [
    # (path, value, what the one problem says): the problem is shown at the path (a range whole, a list at its index)
    ("source.g_minus_r", {"min": 0.8, "max": 0.2}, "max (0.2) is below min (0.8)"),
    ("source.sersic_n", {"min": 0.1, "max": 2.0}, "sersic_n [0.1, 2.0] must lie in (0.2, 10]"),
    ("source.sersic_n", {"min": 0.5, "max": 12.0}, "sersic_n [0.5, 12.0] must lie in (0.2, 10]"),
    ("source.lens_q", {"min": 0.0, "max": 1.0}, "lens_q [0.0, 1.0] must lie in (0, 1]"),
    ("source.lens_q", {"min": 0.5, "max": 1.5}, "lens_q [0.5, 1.5] must lie in (0, 1]"),
    ("source.g_minus_r", {"min": -1000, "max": -999}, "g_minus_r [-1000.0, -999.0] must lie in [-5, 5]"),
    ("source.r_minus_z", {"min": 0, "max": 900}, "r_minus_z [0.0, 900.0] must lie in [-5, 5]"),
    ("source.position_max_frac", 0, "Input should be greater than 0"),
    ("source.mag_prior", {"r_min": 23.0, "r_max": 23.0}, "r_max (23.0) must exceed r_min (23.0)"),
    ("source.mag_prior.slope", 5.0, "Input should be less than or equal to 1"),
    ("survey.sky_lenses.theta_e", {"min": 3.0, "max": 1.0}, "max (1.0) is below min (3.0)"),
    ("survey.sky_lenses.theta_e", {"min": 0.0, "max": 2.0}, "theta_e [0.0, 2.0] must lie in (0, 100]"),
    ("survey.sky_lenses.src_reff", {"min": 0.1, "max": 200}, "src_reff [0.1, 200.0] must lie in (0, 100]"),
    ("survey.sky_lenses.src_e", {"min": 0.0, "max": 1.0}, "src_e [0.0, 1.0] must lie in [0, 1)"),
    ("survey.sky_lenses.shear", {"min": -0.1, "max": 0.1}, "shear [-0.1, 0.1] must lie in [0, 1)"),
    ("survey.sky_lenses.src_n", {"min": 0.5, "max": 20}, "src_n [0.5, 20.0] must lie in (0.2, 10]"),
    ("survey.sky_lenses.lens_q", {"min": 0.5, "max": 1.2}, "lens_q [0.5, 1.2] must lie in (0, 1]"),
    ("survey.sky_lenses.r_minus_z", {"min": -9, "max": 0}, "r_minus_z [-9.0, 0.0] must lie in [-5, 5]"),
    ("survey.sky_lenses.prevalence", 1.5, "Input should be less than or equal to 1"),
    ("survey.sky_lenses.mag_prior.r_max", 40.0, "Input should be less than 30"),
    ("survey.field_galaxies.slope", 100.0, "Input should be less than or equal to 1"),
    ("survey.field_galaxies.r_max", 1000.0, "Input should be less than 30"),
    ("survey.field_galaxies", {"r_min": 25.5}, "r_min (25.5) must be below r_max (25.5) (AB mag)"),
    ("survey.field_galaxies.density", 1e5, "Input should be less than or equal to 1000"),
    ("survey.field_galaxies.density", -1.0, "Input should be greater than or equal to 0"),
    ("survey.field_galaxies.g_r", {"min": -2000, "max": 0}, "g_r [-2000.0, 0.0] must lie in [-5, 5]"),
    ("survey.field_galaxies.sigma", {"min": 0.0, "max": 0.4}, "sigma [0.0, 0.4] must lie in (0, 100]"),
    ("survey.confusers.ring", -0.1, "Input should be greater than or equal to 0"),
    ("survey.confusers", {"merger": 0.6, "spiral": 0.5}, "the confuser shares sum to 1.24; a host has at most one"),
    ("survey.ra_range", [160.0, 150.0], "need 0 <= ra_min < ra_max <= 360 (deg)"),
    ("survey.dec_range", [5.0, 5.0], "need -90 <= dec_min < dec_max <= 90 (deg)"),
    ("grid.src_e", [0.2, 1.0], "Input should be less than 1"),
    ("grid.shear", [-0.03], "Input should be greater than or equal to 0"),
    ("controls.fraction", 1.0, "Input should be less than 1"),
    ("splits.fractions", {"train": 0.8, "val": 0.15, "test": 0.1}, "train + val + test must be 1, got 1.05"),
    ("evaluate.lens_prevalence", 0.0, "Input should be greater than 0"),
    ("invariants.L2.min_share", 1.5, "Input should be less than or equal to 1"),
    ("invariants.L7.max_invisible_share", -0.1, "Input should be greater than or equal to 0"),
    ("invariants.L7", {"min_visible_snr": 600.0}, "min_visible_snr (600) must be below max_plausible_snr (500)"),
    ("engine.spark_master", "spark//x", "'spark//x' is not a Spark master URL; use local[*], local[N], spark://"),
    ("engine.train_processes", 0, "Input should be greater than or equal to 1"),
]


@pytest.mark.parametrize(("path", "value", "problem"), DOMAINS)
def test_a_value_outside_its_domain_is_refused_naming_the_field(path: str, value: object, problem: str) -> None:
    (line,) = _problems(path, value)
    assert re.match(rf"  - {re.escape(path)}(\[\d+\])?( = \S+)?: {re.escape(problem)}", line), line


def _arc_params(drawn: pd.DataFrame, theta_e: torch.Tensor, src_reff: torch.Tensor) -> ArcParams:
    """The renderer's parameters of drawn source rows (darkhalo.sources' columns), which ArcParams checks."""

    def column(name: str) -> torch.Tensor:
        return torch.from_numpy(drawn[name].to_numpy(np.float64)).float()

    names = ("lens_q", "lens_phi", "g1", "g2", "src_x", "src_y", "src_n", "src_q", "src_phi")
    flux = torch.stack([column(f"src_flux_{b}") for b in "grz"], dim=1)
    return ArcParams(theta_e=theta_e, src_reff=src_reff, flux=flux, **{name: column(name) for name in names})


def test_the_widest_source_ranges_the_spec_takes_render() -> None:
    """The domains are the renderer's: positives drawn across the widest accepted ranges (a hair inside each open
    end) are valid ArcParams rows, which refuse a Sersic index, axis ratio or flux outside their own."""
    widest = {
        "brightness": "prior",
        "mag_prior": {"kind": "number_counts", "r_min": 15.001, "r_max": 29.999, "slope": 1.0},
        "sersic_n": {"min": 0.2001, "max": 10.0},
        "g_minus_r": {"min": -5.0, "max": 5.0},
        "r_minus_z": {"min": -5.0, "max": 5.0},
        "position_max_frac": 2.0,
        "lens_q_from": "prior",
        "lens_q": {"min": 1e-6, "max": 1.0},
    }
    spec = _accepted("source", widest)
    n = 4000
    rows = pd.DataFrame(
        {
            "host_id": np.arange(n),
            "config_id": np.zeros(n, np.int32),
            "theta_e": np.full(n, 1.0),
            "src_e": np.full(n, 0.2),
            "shear": np.full(n, 0.03),
            **{f"MW_TRANSMISSION_{b}": np.ones(n) for b in "GRZ"},
        }
    )
    drawn = draw_source_parameters(rows, spec.source, spec.seed)
    _arc_params(drawn, torch.ones(n), torch.full((n,), 0.2))
    assert drawn["src_n"].min() < 0.3 and drawn["lens_q"].min() < 0.01  # the draws reach the edges


def test_the_widest_sky_lenses_the_spec_takes_render() -> None:
    widest = {
        "prevalence": 0.01,
        "theta_e": {"min": 1e-3, "max": 100.0},
        "src_reff": {"min": 1e-3, "max": 100.0},
        "src_e": {"min": 0.0, "max": 0.999},
        "src_n": {"min": 0.2001, "max": 10.0},
        "g_minus_r": {"min": -5.0, "max": 5.0},
        "r_minus_z": {"min": -5.0, "max": 5.0},
        "shear": {"min": 0.0, "max": 0.999},
        "lens_q": {"min": 1e-6, "max": 1.0},
    }
    spec = _accepted("survey.sky_lenses", widest)
    n = 2000
    hosts = pd.DataFrame(
        {
            "RELEASE": np.full(n, 10000),
            "BRICKID": np.arange(n),
            "OBJID": np.arange(n),
            "SHAPE_E1": np.linspace(-0.99, 0.99, n),
            "SHAPE_E2": np.zeros(n),
        }
    )
    arcs = sky_lenses.draw(spec.seed, hosts, np.ones((n, 3)), spec.survey.sky_lenses)  # ArcParams: checked
    assert float(arcs.src_n.min()) < 0.3 and float(arcs.theta_e.max()) > 50


# --- splits the spec's own sky leaves (nearly) empty -----------------------------------------------------------------

EMPTY_SPLITS = [
    # (path, value, the split named, the parent hosts it can expect at most): embedded.yaml's sky is 10 x 5 deg of
    # 40,000 objects at nside 64
    ("splits.nside", 1, "val", "0.0"),  # one HEALPix pixel of 3,438 deg^2 holds the whole sky: train takes it
    ("splits.nside", 8, "test", "0.0"),  # five pixels, none hashed to test
    ("survey.n_objects", 300, "test", "3.4"),  # enough pixels, too few objects
    ("survey.ra_range", [150.0, 150.5], "test", "0.0"),  # a sliver of sky: 15 pixels, none hashed to test
]


@pytest.mark.parametrize(("path", "value", "split", "hosts"), EMPTY_SPLITS)
def test_a_split_the_sky_leaves_empty_is_refused_naming_it_and_the_numbers(
    path: str, value: object, split: str, hosts: str
) -> None:
    (line,) = _problems(path, value)
    assert line.startswith("  - spec: splits: ") and f"each split needs {MIN_SPLIT_HOSTS}" in line, line
    assert f"the {split} split can expect at most {hosts} parent hosts (" in line, line
    assert "HEALPix pixels at nside" in line and "raise survey.n_objects" in line


def test_a_sky_that_fills_every_split_is_accepted_and_a_real_sky_is_left_to_the_preflight() -> None:
    assert _accepted("survey.n_objects", 1000).survey.n_objects == 1000  # test: 0.046 of the sky x 250 LRGs
    assert _accepted("splits.nside", 8192).splits.nside == 8192
    data = _put(_put(spec_data(), "survey", {"kind": "legacy", "catalogs": ["sweep.fits"]}), "splits.nside", 1)
    data["evaluate"]["lens_prevalence"] = 0.001
    assert spec_from_dict(data).splits.nside == 1  # a real sky's hosts are unknown until its catalog is read
