"""The house is layered: cli -> runner -> stages -> {lensing, surveys, data_contracts, metrics}.

Imports are read from the source (ast), so a violation anywhere in a module is caught, including
imports inside functions. Stages are thin: only the runner and the CLI import a stage module, and
stages import no other stage (``darkhalo.stages.base`` is shared).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

from darkhalo.stages import STAGES

STAGE_MODULES = {stage.module for stage in STAGES}


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # from package import module
    return names


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


# (importer prefix, forbidden import prefixes)
RULES = [
    ("data_contracts", ("darkhalo",)),
    ("darkhalo.lensing", ("darkhalo.stages", "darkhalo.runner", "darkhalo.cli", "darkhalo.surveys")),
    ("darkhalo.surveys", ("darkhalo.stages", "darkhalo.runner", "darkhalo.cli")),
    ("darkhalo.metrics", ("darkhalo.stages", "darkhalo.runner", "darkhalo.cli")),
    ("darkhalo.training", ("darkhalo.stages", "darkhalo.runner", "darkhalo.cli")),
    ("darkhalo.stages", ("darkhalo.runner", "darkhalo.cli")),
    ("darkhalo.runner", ("darkhalo.cli",)),
]


@pytest.mark.parametrize(("importer", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_no_import_runs_back_up_the_layers(importer: str, forbidden: tuple[str, ...]) -> None:
    offenders = []
    for path in _modules("darkhalo") + _modules("data_contracts"):
        name = _module_name(path)
        if name != importer and not name.startswith(importer + "."):
            continue
        for imported in _imports(path):
            if any(imported == f or imported.startswith(f + ".") for f in forbidden):
                offenders.append(f"{name} imports {imported}")
    assert not offenders, "\n".join(offenders)


def test_the_rules_see_real_modules() -> None:
    names = {_module_name(p) for p in _modules("darkhalo") + _modules("data_contracts")}
    assert {"darkhalo.runner", "darkhalo.cli", "data_contracts.findings"} <= names
    assert "darkhalo" in _imports(REPO / "darkhalo" / "runner.py") or any(
        i.startswith("darkhalo.") for i in _imports(REPO / "darkhalo" / "runner.py")
    )


def _imported_stages(path: Path) -> set[str]:
    """The stage modules (``STAGES``) a module imports."""
    return {i for i in _imports(path) if any(i == m or i.startswith(m + ".") for m in STAGE_MODULES)}


def test_only_the_runner_and_the_cli_import_a_stage_module() -> None:
    offenders = []
    for path in _modules("darkhalo") + _modules("data_contracts"):
        name = _module_name(path)
        if name in ("darkhalo.runner", "darkhalo.cli") or name in STAGE_MODULES:
            continue
        offenders += [f"{name} imports {imported}" for imported in sorted(_imported_stages(path))]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_a_stage_imports_no_other_stage(stage: str) -> None:
    path = REPO.joinpath(*stage.split(".")).with_suffix(".py")
    shared = "darkhalo.stages.base"
    others = {i for i in _imports(path) if i.startswith("darkhalo.stages.") and not i.startswith(shared)}
    assert not others, f"{stage} imports {', '.join(sorted(others))}"
