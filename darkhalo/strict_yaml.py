"""The YAML that specs and input descriptions are read as: PyYAML's safe loader with three changes.

- A mapping that repeats a key is refused, naming both lines (PyYAML keeps the last value silently, so a reviewer
  could read one setting while another runs).
- Plain scalars resolve by the YAML 1.2 core schema, not 1.1's: only true/false are booleans (``yes``, ``no``,
  ``on``, ``off`` stay strings), integers are decimal, ``0o`` octal or ``0x`` hex (``0777`` is 777, ``1_000`` and
  ``1:30`` are strings), floats are decimal with a point or an exponent, or ``.inf``/``.nan``; dates stay strings.
- Nesting deeper than MAX_DEPTH is refused at its line (PyYAML recurses per level and dies of RecursionError).

``read`` reads a file as UTF-8, refusing invalid bytes at their offset and line; PyYAML refuses NUL and the other
control characters at their position.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

BOOL, INT, FLOAT, NULL = (f"tag:yaml.org,2002:{name}" for name in ("bool", "int", "float", "null"))
MERGE = "tag:yaml.org,2002:merge"
#: The YAML 1.2 core schema's plain scalars, tag by tag (in the order they are tried), with their first characters.
CORE_SCHEMA = (
    (BOOL, r"true|True|TRUE|false|False|FALSE", "tTfF"),
    (INT, r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    (
        FLOAT,
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        "-+0123456789.",
    ),
    (NULL, r"~|null|Null|NULL|", ["~", "n", "N", ""]),
)
#: The deepest nesting of collections accepted; a spec nests four levels.
MAX_DEPTH = 64


class StrictLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with YAML 1.2 core scalars, duplicate keys and nesting deeper than MAX_DEPTH refused."""

    depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ComposerError(None, None, f"collections nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first
            except TypeError:  # an unhashable key: SafeLoader refuses it below
                continue
            if seen:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice (first on line {first[key].line + 1})",
                    key_node.start_mark,
                )
            first[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        value = str(self.construct_scalar(node))
        if value.startswith(("0o", "0x")):
            return int(value[2:], 8 if value[1] == "o" else 16)
        return int(value, 10)


StrictLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp) for tag, regexp in resolvers if tag not in (BOOL, INT, FLOAT, NULL, "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern, _first in CORE_SCHEMA:
    StrictLoader.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), list(_first))
StrictLoader.add_constructor(INT, StrictLoader.construct_yaml_int)


def load(text: str, source: str = "<string>") -> Any:
    """The YAML document in ``text`` (raises yaml.YAMLError naming ``source`` and the line of what it refuses)."""
    stream = io.StringIO(text)
    stream.name = source
    return yaml.load(stream, Loader=StrictLoader)  # a SafeLoader: no Python objects


def read(path: Path) -> Any:
    """The YAML document in the file ``path``: OSError naming it if unreadable, yaml.YAMLError naming it and the
    place of what it refuses (invalid UTF-8 by byte offset and line)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = f"invalid UTF-8 (byte 0x{data[exc.start]:02x}: {exc.reason})"
        raise yaml.YAMLError(f'{bad}\n  in "{path}", byte {exc.start}, line {line}') from None
    return load(text, str(path))
