"""Reading the spec's YAML: limits on size and aliases, no duplicate keys, and the line of every key.

Kept apart from the models (``core/spec.py``) because it is about the file, not its meaning: every error it
raises, and every validation error of the models, names the file, the line and the field.
"""

from __future__ import annotations

import gc
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from liberation_assets.core.errors import SpecError

MAX_SPEC_BYTES = 64 * 1024 * 1024
"""A spec larger than this is refused before parsing (60,000 streams take about 5 MB)."""
MAX_ALIAS_EXPANSION = 100_000
"""YAML aliases may add at most this many nodes beyond the document's own: an alias bomb is refused, not expanded."""

ModelT = TypeVar("ModelT", bound=BaseModel)


def read_spec_text(spec_path: Path) -> str:
    """A spec file's text; SpecError naming the file (and the line of a byte that is not UTF-8)."""
    try:
        if spec_path.is_dir():
            raise SpecError(f"{spec_path}: is a directory, not a spec file (pass the YAML file with --spec)")
        size = spec_path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"{spec_path}: {size} bytes, larger than the {MAX_SPEC_BYTES} bytes a spec may have")
        raw = spec_path.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{spec_path}: spec file not found (set LIBERATION_SPEC or pass --spec)") from None
    except OSError as exc:
        raise SpecError(f"{spec_path}: cannot read the spec file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"{spec_path}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); save the spec as UTF-8"
        ) from None
    return text


class _SpecLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader (libyaml's C parser when present: 10x faster) that refuses duplicate mapping keys (PyYAML keeps the last)."""

    _resolved: dict[tuple[Any, str, Any], str] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        """The implicit tag of a scalar, memoized: specs repeat the same few values (source names, key columns)."""
        if kind is not yaml.ScalarNode or not isinstance(value, str) or len(value) > 64:
            return super().resolve(kind, value, implicit)
        key = (kind, value, implicit)
        tag = self._resolved.get(key)
        if tag is None:
            tag = self._resolved[key] = super().resolve(kind, value, implicit)
            if len(self._resolved) > 100_000:
                self._resolved.clear()
        return tag

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:  # type: ignore[override]
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges; its keys may be overridden on purpose
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                first = seen.get(key)
            except TypeError:
                continue  # unhashable key: SafeLoader reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {first}, again at line {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-untyped-call,no-any-return]


def _check_alias_expansion(root: yaml.Node, source_name: str) -> None:
    """Refuse documents whose aliases expand far beyond their own nodes (a "billion laughs" bomb)."""
    expanded: dict[int, int] = {}
    distinct = 0
    # Iterative post-order walk; each distinct node is sized once, an alias reuses its target's size.
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in expanded:
            continue
        children = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else (list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        )
        if not children_done:
            if id(node) in visiting:
                raise SpecError(
                    f"{source_name}:{node.start_mark.line + 1}: a YAML alias refers to its own anchor (a cycle)"
                )
            visiting.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in expanded)
            continue
        distinct += 1
        visiting.discard(id(node))
        expanded[id(node)] = 1 + sum(expanded.get(id(child), 1) for child in children)
        if expanded[id(node)] > distinct + MAX_ALIAS_EXPANSION:
            raise SpecError(
                f"{source_name}:{node.start_mark.line + 1}: YAML aliases expand past {MAX_ALIAS_EXPANSION} "
                "extra nodes; write the repeated parts out or use fewer aliases"
            )


def validate_yaml(text: str, model: type[ModelT], source_name: str) -> ModelT:
    """Parse YAML text and validate it as ``model``; the garbage collector is paused meanwhile.

    Composing a large spec creates millions of short-lived-looking objects that all survive:
    with the collector on, its repeated full passes make 60,000 streams take minutes, not seconds.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _validate_yaml(text, model, source_name)
    finally:
        if was_enabled:
            gc.enable()


def _validate_yaml(text: str, model: type[ModelT], source_name: str) -> ModelT:
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(f"{source_name}: larger than the {MAX_SPEC_BYTES} bytes a spec may have")
    loader = _SpecLoader(text)
    try:
        root = loader.get_single_node()
        if root is not None and "&" in text:  # no anchor, no alias: skip the walk
            _check_alias_expansion(root, source_name)
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{source_name}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise SpecError(f"{source_name}:1: the spec must be a mapping with sources, streams and kafka")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_describe(exc, _line_index(root), source_name)) from None


def _line_index(node: yaml.Node | None, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map each key path in the YAML document to its 1-based line."""
    index: dict[tuple[Any, ...], int] = {}
    if node is None:
        return index
    index[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = path + (key_node.value,)
            index.update(_line_index(value_node, child))
            index[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            index.update(_line_index(item, path + (position,)))
    return index


def _describe(exc: ValidationError, lines: dict[tuple[Any, ...], int], source_name: str) -> str:
    messages = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and part.startswith("function-")))
        loc = tuple("schema" if part == "db_schema" else part for part in loc)
        text = error["msg"].removeprefix("Value error, ")
        if not loc and (named := re.match(r"^([\w.]+): ", text)):
            # Cross-field checks name their own path; point the line at it.
            loc = tuple(named.group(1).split("."))
            text = text[named.end() :]
        kind = error["type"]
        if kind == "extra_forbidden":
            text = "unknown field"
        elif kind == "missing":
            text = "missing required field"
        field = ".".join(str(part) for part in loc) or "(top level)"
        line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), 1)
        messages.append(f"{source_name}:{line}: {field}: {text}")
    if len(messages) == 1:
        return f"invalid spec: {messages[0]}"
    return "invalid spec:\n  " + "\n  ".join(messages)
