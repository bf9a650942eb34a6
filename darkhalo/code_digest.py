"""A digest of the code a stage runs, for its lineage key: a fixed bug re-runs exactly the stages that run it.

The code of a module is the module itself and, transitively, every module of ``CODE_PACKAGES`` (and of the
module's own top-level package) that it imports, read from the source with ``ast``: imports inside functions
count, relative imports are resolved, imports under ``if TYPE_CHECKING:`` (never run) do not, and a module's
parent packages (whose ``__init__`` runs first) are part of it. The digest is sha256 over the sorted
(module name, file bytes) pairs, so neither paths nor file times matter.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

#: Packages whose modules are followed into: darkhalo and its contracts (third-party code is not digested).
CODE_PACKAGES = ("darkhalo", "data_contracts")


def code_digest(module: str) -> str:
    """sha256 (hex) of ``module``'s code: the sorted (name, bytes) of every module in its import closure."""
    digest = hashlib.sha256()
    for name, path in sorted(module_files(module).items()):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def package_fingerprint() -> str:
    """This process's darkhalo as installed: its version and the sha256 (12 hex digits) of every file of
    CODE_PACKAGES (compiled caches left out), so two installs of the same code agree and any edit shows; the Spark
    driver refuses executors whose fingerprint differs (darkhalo.spark.check_executors)."""
    from darkhalo import __version__

    digest = hashlib.sha256()
    for name in CODE_PACKAGES:
        root = Path(__import__(name).__file__).resolve().parent
        for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(f"{name}/{path.relative_to(root).as_posix()}".encode() + b"\0" + path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def module_files(module: str) -> dict[str, Path]:
    """The source file of ``module`` and of every followed module it imports, transitively, by module name."""
    packages = {*CODE_PACKAGES, module.partition(".")[0]}
    found: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        if name in found or name.partition(".")[0] not in packages:
            continue
        path = _source(name)
        if path is None:
            if name == module:
                raise ModuleNotFoundError(f"no source file for module {module!r}")
            continue  # ``from package import name`` where the name is not a module
        found[name] = path
        pending += _parents(name) + imported_names(path, name)
    return found


def imported_names(path: Path, module: str) -> list[str]:
    """Every module name ``path`` (the source of ``module``) may import, absolute, outside ``if TYPE_CHECKING:``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return list(_imports(path.read_bytes(), package, str(path)))


@lru_cache(maxsize=1024)
def _imports(source: bytes, package: str, filename: str) -> tuple[str, ...]:
    """The absolute module names a source in ``package`` may import (cached by its bytes: parsing is the cost)."""
    names: list[str] = []
    for node in _run_statements(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, package)
            names += [base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")]
    return tuple(names)


#: Nodes that hold statements (an import is a statement; expressions are not searched).
_BLOCKS = (ast.stmt, ast.excepthandler, ast.match_case, ast.Module)


def _run_statements(tree: ast.Module) -> list[ast.stmt]:
    """The statements of ``tree`` at any depth that can run: all but the bodies of ``if TYPE_CHECKING:`` blocks."""
    statements, pending = [], [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.stmt):
            statements.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending += node.orelse
        else:
            pending += [child for child in ast.iter_child_nodes(node) if isinstance(child, _BLOCKS)]
    return statements


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(module: str | None, level: int, package: str) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in ``package``."""
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - level + 1])
    return f"{base}.{module}" if module else base


def _parents(name: str) -> list[str]:
    """The packages whose ``__init__`` runs before ``name``: ``a.b.c`` -> ``a``, ``a.b``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _source(name: str) -> Path | None:
    """The ``.py`` file of module ``name`` found on the import path (nothing is imported), or None."""
    top, _, rest = name.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for root in spec.submodule_search_locations or ():
        stem = Path(root, *rest.split("."))
        for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None
