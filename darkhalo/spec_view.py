"""A spec seen through the sections one reader declares: reading any other section raises.

A stage declares the spec sections its output depends on (``Stage.sections``); its lineage digest
covers exactly those, so a stage that could read an undeclared section would be skipped on a
re-run after that section changed. A section is named whole (``"psf"``) or down to a field
(``"evaluate.min_expected_false_positives"``, ``"invariants.L9.core_size_pix"``). ``generation``
(the run's name, not a setting) is always readable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

#: Spec fields every reader may see: names, not settings.
ALWAYS_READABLE = frozenset({"generation"})

Tree = dict[str, "Tree | None"]  # a field name -> None (the whole field) or the declared sub-fields


class UndeclaredSection(RuntimeError):
    """A reader asked for a spec section (or field) it did not declare."""


def section_tree(sections: Iterable[str]) -> Tree:
    """``("psf", "invariants.L9.core_size_pix")`` -> ``{"psf": None, "invariants": {"L9": {"core_size_pix": None}}}``"""
    tree: Tree = {}
    for section in sections:
        node = tree
        *parents, leaf = section.split(".")
        for name in parents:
            if name in node and node[name] is None:
                break  # a whole parent is already declared
            node = node.setdefault(name, {})  # type: ignore[assignment]
        else:
            node[leaf] = None
    return tree


def minimal(sections: Iterable[str]) -> tuple[str, ...]:
    """``sections`` without repeats and without paths a declared parent already covers, in order."""
    unique = list(dict.fromkeys(sections))
    return tuple(p for p in unique if not any(p.startswith(f"{other}.") for other in unique))


class SpecView:
    """``model`` (a spec or one of its sections) restricted to ``tree``; ``reader`` names who reads it."""

    def __init__(self, model: BaseModel | SpecView, tree: Tree, reader: str, path: str = "") -> None:
        self.__dict__.update(_model=model, _tree=tree, _reader=reader, _path=path)

    @classmethod
    def of(cls, spec: BaseModel | SpecView, sections: Iterable[str], reader: str) -> SpecView:
        """The view of a spec that ``reader`` (e.g. ``stage 'inject'``) gets; a view of a view sees
        only what both declare."""
        return cls(spec, section_tree(sections), reader)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # private and dunder lookups (pickling, copying) never reach the spec
            raise AttributeError(name)
        if name not in _fields(self._model):  # a method would read undeclared sections
            raise AttributeError(f"a spec view has no '{name}' (it shows declared fields and model_copy only)")
        path = f"{self._path}.{name}" if self._path else name
        if not self._path and name in ALWAYS_READABLE:
            return getattr(self._model, name)
        if name not in self._tree:
            declared = ", ".join(_flatten(self._tree, self._path)) or "nothing"
            raise UndeclaredSection(
                f"{self._reader} reads spec section '{path}', which it does not declare (declared: {declared})"
            )
        value = getattr(self._model, name)
        sub = self._tree[name]
        return value if sub is None else SpecView(value, sub, self._reader, path)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a spec view is read-only")

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> SpecView:
        """A copy with some declared sections replaced, seen through the same declaration."""
        for name in update or {}:
            getattr(self, name)  # replacing a section the reader cannot see is reading it
        copy = self._model.model_copy(update=update, deep=deep)
        return SpecView(copy, self._tree, self._reader, self._path)

    def __repr__(self) -> str:
        return f"SpecView({self._reader}: {', '.join(_flatten(self._tree, self._path))})"


def _fields(model: BaseModel | SpecView) -> dict[str, Any]:
    """The fields a model (or the model under a view) has."""
    while isinstance(model, SpecView):
        model = model._model
    return type(model).model_fields


def _flatten(tree: Tree, prefix: str = "") -> list[str]:
    out = []
    for name, sub in tree.items():
        path = f"{prefix}.{name}" if prefix else name
        out += [path] if sub is None else _flatten(sub, path)
    return out
