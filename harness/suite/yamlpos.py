"""Safe YAML loading that remembers where every key and list item came from.

Suite errors must cite lines, but plain `yaml.safe_load` forgets positions. We compose the node
tree with a SafeLoader subclass and build plain dicts/lists ourselves, recording the 1-based line
of each mapping key and sequence item under its key path, e.g. ("sweep", "mode", 1) -> 14.
Building the values ourselves also lets us catch duplicate keys, which PyYAML silently resolves
to the last one (a duplicated variant label would otherwise drop a variant without a word).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

KeyPath = tuple[Any, ...]  # mapping keys (usually str) and list indices (int)


class LineLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float.

    YAML 1.1 (PyYAML) only reads exponents with a dot (`1.0e-3`); `lr: 1e-3` would otherwise
    arrive as the string "1e-3" and fail type checks with a baffling message.
    """


LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@dataclass
class Document:
    """A loaded YAML document: the plain value plus where its pieces were written."""

    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    # (key path, line of the repeat, line of the first occurrence) for each repeated mapping key
    duplicates: list[tuple[KeyPath, int, int]] = field(default_factory=list)

    def line_of(self, path: KeyPath) -> int | None:
        """Line of `path`, or of its nearest written ancestor (a missing key points at its parent)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def load_yaml(text: str) -> Document:
    """Parse one YAML document. Raises yaml.MarkedYAMLError (with a line/column mark) on bad input."""
    loader = LineLoader(text)
    try:
        root = loader.get_single_node()
        doc = Document(data=None)
        if root is not None:
            doc.lines[()] = root.start_mark.line + 1
            doc.data = _build(loader, root, (), doc, active=set())
        return doc
    finally:
        loader.dispose()


def _build(loader: LineLoader, node: Node, path: KeyPath, doc: Document, active: set[int]) -> Any:
    if isinstance(node, (MappingNode, SequenceNode)):
        # An alias may point back at an enclosing node; plain values cannot represent that cycle.
        if id(node) in active:
            raise ConstructorError(None, None, "found a recursive alias", node.start_mark)
        active = active | {id(node)}
    if isinstance(node, MappingNode):
        loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys the way safe_load does
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise ConstructorError("while reading a mapping", node.start_mark,
                                       "found a key that is a list or mapping", key_node.start_mark) from None
            key_path = path + (key,)
            line = key_node.start_mark.line + 1
            if key in out:
                doc.duplicates.append((key_path, line, doc.lines[key_path]))
            doc.lines[key_path] = line
            out[key] = _build(loader, value_node, key_path, doc, active)
        return out
    if isinstance(node, SequenceNode):
        items = []
        for index, item_node in enumerate(node.value):
            doc.lines[path + (index,)] = item_node.start_mark.line + 1
            items.append(_build(loader, item_node, path + (index,), doc, active))
        return items
    return loader.construct_object(node, deep=True)


def format_path(path: KeyPath) -> str:
    """("sweep", "mode", 1) -> "sweep.mode[1]"."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
