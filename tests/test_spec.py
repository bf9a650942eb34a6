"""Generation specs: every spec loads, Gen 1 is recorded exactly, bad keys and values are named."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SPECS, spec_data

from darkhalo.spec import GenerationSpec, SpecError, load_spec, spec_from_dict

ALL_SPECS = sorted(SPECS.glob("*.yaml"))


@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.name)
def test_every_spec_loads(path: Path) -> None:
    spec = load_spec(path)
    assert spec.generation == path.stem or path.stem == "embedded"
    assert spec.grid.n_configs >= 1


def test_there_is_a_gen1_a_gen2_and_an_embedded_spec() -> None:
    names = {p.stem for p in ALL_SPECS}
    assert "gen1_resnet18_v3_color_relaxed" in names
    assert "embedded" in names
    assert any(n.startswith("gen2_") for n in names)


def test_gen1_spec_is_gen1_exactly() -> None:
    spec = load_spec(SPECS / "gen1_resnet18_v3_color_relaxed.yaml")
    sel = spec.selection
    assert sel.variant == "v3_color_relaxed"
    assert (sel.z_mag_max, sel.r_minus_z_min, sel.z_minus_w1_min) == (20.4, 0.4, 0.8)
    assert sel.extinction_corrected is False
    assert spec.grid.axes == {
        "theta_e_arcsec": [0.3, 0.6, 1.0],
        "src_reff_arcsec": [0.08, 0.15],
        "src_e": [0.0, 0.3],
        "shear": [0.0, 0.03],
        "src_dmag": [1.0, 2.0],
    }
    assert spec.grid.n_configs == 48 and spec.grid.configs_per_host is None
    assert (spec.controls.mode, spec.controls.fraction) == ("paired", 0.5)
    assert spec.psf.model == "gaussian"
    assert (spec.stamps.size, spec.stamps.pixel_scale) == (64, 0.262)
    assert spec.source.brightness == "host_relative"
    t = spec.train
    assert (t.arch, t.optimizer, t.lr, t.weight_decay) == ("resnet18_64", "adamw", 3e-4, 1e-4)
    assert (t.batch_size, t.epochs, t.loss, t.precision) == (512, 10, "bce", "bf16")
    assert t.augment == ["flip", "rot90"]
    assert spec.expect.audit_failures == ["L1", "L2", "L3", "L11", "L12"] and spec.survey.confusers is None
    assert spec.evaluate.real_sets == []


def test_gen2_spec_answers_each_lesson() -> None:
    (path,) = SPECS.glob("gen2_*.yaml")
    spec = load_spec(path)
    assert spec.controls.mode == "unpaired"
    assert spec.psf.model == "survey"
    assert spec.source.brightness == "prior" and spec.source.mag_prior is not None
    assert spec.splits.nside == 32  # HEALPix pixels of ~3.4 deg^2, hashed to splits (L5)
    assert min(spec.grid.theta_e_arcsec) >= 0.5 * 1.3  # half the median r-band PSF FWHM
    assert {s.label for s in spec.evaluate.real_sets} == {"lens", "non_lens"}  # real recall beside it (L12)
    assert all((REPO / s.input).is_file() for s in spec.evaluate.real_sets)
    assert spec.expect.audit_failures == []


def test_real_sets_need_unique_names_and_a_known_label() -> None:
    data = spec_data()
    first = data["evaluate"]["real_sets"][0]
    data["evaluate"]["real_sets"].append(dict(first))
    assert "ps1_sled_lensed_galaxies given more than once" in _error(data)
    data["evaluate"]["real_sets"] = [{**first, "label": "lensed"}]
    assert "evaluate.real_sets[0].label" in _error(data)


def _error(data: dict) -> str:
    with pytest.raises(SpecError) as info:
        spec_from_dict(data, source="specs/x.yaml")
    return str(info.value)


@pytest.mark.parametrize(
    ("section", "typo", "meant"),
    [
        (None, "gird", "grid"),
        ("controls", "fractoin", "fraction"),
        ("survey", "n_objetcs", "n_objects"),
        ("train", "weight_decy", "weight_decay"),
        ("source", "mag_prio", "mag_prior"),
    ],
)
def test_a_misspelt_key_is_named_with_its_path_allowed_keys_and_a_suggestion(
    section: str | None, typo: str, meant: str
) -> None:
    data = spec_data()
    (data if section is None else data[section])[typo] = 1
    message = _error(data)
    where = "the top level" if section is None else section
    assert "specs/x.yaml" in message
    assert f"unknown key '{typo}' at {where}" in message
    assert f"did you mean '{meant}'?" in message
    assert "allowed keys:" in message and meant in message.split("allowed keys:")[1]


def test_a_misspelt_nested_key_names_the_nested_path() -> None:
    data = spec_data()
    data["invariants"] = {"L2": {"min_shar": 0.5}}
    assert "unknown key 'min_shar' at invariants.L2" in _error(data)
    data = spec_data()
    data["source"]["mag_prior"]["r_mn"] = 22
    assert "unknown key 'r_mn' at source.mag_prior" in _error(data)


def test_a_misspelt_discriminator_value_is_named() -> None:
    data = spec_data()
    data["survey"]["kind"] = "mok"
    message = _error(data)
    assert "survey.kind = 'mok'" in message and "did you mean 'mock'?" in message


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("controls", "fraction"), 1.5, "controls.fraction"),
        (("train", "lr"), -1, "train.lr"),
        (("stamps", "size"), 63, "stamps.size"),
        (("splits", "nside"), 33, "splits.nside"),
        (("survey", "n_objects"), 0, "survey.n_objects"),
        (("injection", "supersample"), 0, "injection.supersample"),
        (("evaluate", "confidence"), 1.2, "evaluate.confidence"),
    ],
)
def test_an_out_of_range_value_names_the_field(path: tuple[str, str], value: object, field: str) -> None:
    data = spec_data()
    data.setdefault(path[0], {})[path[1]] = value
    assert f"{field} = {value!r}" in _error(data)


def test_a_grid_value_out_of_range_names_its_index() -> None:
    data = spec_data()
    data["grid"]["theta_e_arcsec"] = [0.8, -1.0]
    assert "grid.theta_e_arcsec[1] = -1.0" in _error(data)


def test_every_problem_is_reported_at_once() -> None:
    data = spec_data()
    data["controls"]["fraction"] = 2
    data["train"]["epoch"] = 3
    message = _error(data)
    assert "controls.fraction" in message and "unknown key 'epoch' at train" in message


def test_waivers_need_a_written_reason() -> None:
    data = spec_data()
    data["invariants"] = {"L9": {"waiver": "because"}}
    assert "invariants.L9.waiver" in _error(data)
    data["invariants"] = {"L9": {"waiver": "probes need a GPU-sized test set; see issue 8"}}
    assert spec_from_dict(data).invariants.waiver("L9").startswith("probes")


def test_gen1_brightness_and_prior_brightness_do_not_mix() -> None:
    data = spec_data()
    data["grid"]["src_dmag"] = [1, 2]
    assert "src_dmag" in _error(data)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(evil)


@pytest.mark.parametrize(
    ("text", "first", "second"),
    [
        ("train:\n  epochs: 4\nseed: 7\ntrain:\n  epochs: 40\n", 1, 4),  # a section given twice
        ("train:\n  lr: 0.001\n  epochs: 4\n  lr: 0.1\n", 2, 4),  # a key inside a section given twice
    ],
)
def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path: Path, text: str, first: int, second: int) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=rf"(?s)twice.yaml: not valid YAML: .*twice \(first on line {first}\)") as e:
        load_spec(path)
    assert f'in "{path}", line {second}, column' in str(e.value)


def test_plain_scalars_follow_yaml_1_2_not_1_1(tmp_path: Path) -> None:
    """0777 is decimal, 0o17 octal, yes/no/on/off stay strings: the values a reader of the file sees."""
    data = yaml.safe_load((SPECS / "embedded.yaml").read_text())
    del data["seed"], data["description"]
    text = yaml.safe_dump(data, sort_keys=False)
    path = tmp_path / "spec.yaml"
    for seed, value in (("0777", 777), ("0o17", 15), ("0x1F", 31)):
        path.write_text(f"{text}seed: {seed}\n")
        assert load_spec(path).seed == value
    path.write_text(f"{text}seed: 7\ndescription: no\n")
    assert load_spec(path).description == "no"  # YAML 1.1 reads the boolean False, which no string field takes


def test_a_spec_must_be_a_mapping_and_exist(tmp_path: Path) -> None:
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="a spec is a mapping"):
        load_spec(listing)
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "missing.yaml")


def test_digest_depends_only_on_the_named_sections() -> None:
    base = spec_from_dict(spec_data())
    data = spec_data()
    data["train"]["epochs"] = 99
    changed = spec_from_dict(data)
    assert base.digest("survey", "selection") == changed.digest("survey", "selection")
    assert base.digest("train") != changed.digest("train")
    assert base.digest() != changed.digest()


def test_the_frozen_yaml_loads_back_to_the_same_spec() -> None:
    spec = load_spec(SPECS / "gen2_resnet18_unpaired_survey_psf.yaml")
    again = spec_from_dict(yaml.safe_load(spec.to_yaml()))
    assert again == spec and again.digest() == spec.digest()


def test_grid_configs_are_the_product_of_the_axes() -> None:
    spec = GenerationSpec.model_validate(spec_data("gen1_resnet18_v3_color_relaxed"))
    combos = list(itertools.product(*spec.grid.axes.values()))
    assert len(combos) == spec.grid.n_configs == len(set(combos))
