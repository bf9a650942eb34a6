"""A stage sees only the spec sections it declares, and its lineage digest covers exactly those."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from conftest import spec_data
from rich.console import Console

from darkhalo.audit.judges import JUDGES
from darkhalo.runner import run_generation
from darkhalo.spec import GenerationSpec, spec_from_dict
from darkhalo.spec_view import SpecView, UndeclaredSection
from darkhalo.stages import STAGES, Stage


@pytest.fixture(scope="module")
def spec() -> GenerationSpec:
    return spec_from_dict(spec_data())


def test_an_undeclared_section_raises_naming_the_reader_and_the_section(spec: GenerationSpec) -> None:
    view = SpecView.of(spec, ("seed", "psf", "evaluate.min_expected_false_positives"), "stage 'x'")
    assert view.seed == spec.seed and view.psf == spec.psf and view.generation == spec.generation
    assert view.evaluate.min_expected_false_positives == spec.evaluate.min_expected_false_positives
    with pytest.raises(UndeclaredSection, match=r"stage 'x' reads spec section 'invariants'"):
        _ = view.invariants
    with pytest.raises(UndeclaredSection, match=r"'evaluate.batch_size', which it does not declare"):
        _ = view.evaluate.batch_size
    with pytest.raises(AttributeError, match="model_dump"):
        view.model_dump()  # a method would read every section
    with pytest.raises(AttributeError, match="read-only"):
        view.seed = 3


def test_a_copy_replaces_only_declared_sections_and_a_view_survives_pickling(spec: GenerationSpec) -> None:
    view = SpecView.of(spec, ("psf",), "stage 'x'")
    gaussian = view.model_copy(update={"psf": spec.psf.model_copy(update={"model": "gaussian"})})
    assert gaussian.psf.model == "gaussian" and view.psf.model == spec.psf.model
    with pytest.raises(UndeclaredSection):
        view.model_copy(update={"seed": 1})
    shipped = pickle.loads(pickle.dumps(view))  # as Spark ships a stage's closure to its workers
    assert shipped.psf == spec.psf
    with pytest.raises(UndeclaredSection):
        _ = shipped.seed


def test_a_view_of_a_view_sees_only_what_both_declare(spec: GenerationSpec) -> None:
    outer = SpecView.of(spec, ("invariants", "psf"), "the audit")
    inner = SpecView.of(outer, ("invariants.L2",), "the manifest judge")
    assert inner.invariants.L2 == spec.invariants.L2
    with pytest.raises(UndeclaredSection, match=r"the manifest judge reads spec section 'invariants\.L3'"):
        _ = inner.invariants.L3
    with pytest.raises(UndeclaredSection, match="the manifest judge reads spec section 'psf'"):
        _ = inner.psf


def _resolves(path: str) -> bool:
    model: object = GenerationSpec
    for name in path.split("."):
        fields = getattr(model, "model_fields", {})
        if name not in fields:
            return False
        annotation = fields[name].annotation
        model = next((a for a in getattr(annotation, "__args__", ()) if hasattr(a, "model_fields")), annotation)
    return True


def test_every_declared_section_names_a_real_spec_field() -> None:
    declared = [(s.name, path) for s in STAGES for path in s.sections]
    declared += [(f"{j.stage} judge", path) for j in JUDGES.values() for path in j.sections]
    assert [pair for pair in declared if not _resolves(pair[1])] == []


def test_a_lineage_digest_covers_exactly_the_declared_sections(spec: GenerationSpec) -> None:
    train = next(s for s in STAGES if s.name == "train")
    data = spec_data()
    data.setdefault("evaluate", {})["batch_size"] = 7  # a field of a section train reads only one field of
    data["invariants"] = {"L7": {"max_bright_share": 0.01}}  # a section train does not read
    assert spec_from_dict(data).digest(*train.sections) == spec.digest(*train.sections)
    data["evaluate"]["min_expected_false_positives"] = 20.0  # the field train declares
    assert spec_from_dict(data).digest(*train.sections) != spec.digest(*train.sections)


def test_no_stage_but_the_audit_reads_a_threshold(spec: GenerationSpec) -> None:
    """Thresholds are the judges' business: tightening one re-runs the audit, never the stage that
    made the artifact (a measurement setting such as L9's core box is declared by name)."""
    reads = {s.name: [p for p in s.sections if p.split(".")[0] == "invariants"] for s in STAGES}
    assert reads == {name: [] for name in reads} | {
        "evaluate": ["invariants.L9.core_size_pix"],
        "audit": ["invariants"],
    }


def test_the_runner_gives_a_stage_only_its_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage that reads past its declaration fails naming itself and the section, installing nothing."""
    monkeypatch.setenv("TOY_STAGE", "none")
    peeking = (Stage("first", (), ("train",), "toy_stages.first", "reads the seed it does not declare"),)
    with pytest.raises(UndeclaredSection, match="stage 'first' reads spec section 'seed'"):
        run_generation(spec_from_dict(spec_data()), tmp_path, stages=peeking, console=Console(quiet=True))
    assert not (tmp_path / "embedded" / "first").exists()


def test_every_lesson_is_decided_by_exactly_one_artifact_judge() -> None:
    from data_contracts.lessons import LESSONS

    decided = [lesson for judge in JUDGES.values() for lesson in judge.lessons]
    assert sorted(decided) == sorted(LESSONS) and len(decided) == len(set(decided))
