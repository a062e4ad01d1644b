"""Compatibility rules between a stream's published schema and the schema it would publish now.

A liberated stream is a public interface, so a change is compatible only if

- every event already in the topic still reads under the new schema
  (backward compatibility, as schema registries define it): no field becomes
  required, no type changes except int → float, no limit gets tighter
  (NOT NULL added, shorter max length, smaller integer or decimal, raised
  minimum, lowered maximum, fewer enum values); and
- no consumer loses a field it reads: a dropped or renamed field is
  incompatible too (a rename is a drop plus an add).

Adding a nullable field, relaxing a limit, and widening a type pass.  For a stream in
the connect-json format the Kafka Connect schema is covered too: a change of source type that changes a
field's Connect type or semantic name (``timestamp`` to ``timestamptz``) is incompatible, since a Connect
sink built its column from it.
"""

from __future__ import annotations

from liberation_assets.core.contract.connect_json import connect_field_type
from liberation_assets.core.contract.schema import FieldSchema, StreamSchema

_PROMOTIONS = {("int", "float")}
_CONNECT_PROMOTIONS = {("float32", "float64")}


def incompatibilities(old: StreamSchema, new: StreamSchema, *, connect: bool = False) -> list[str]:
    """Why ``new`` would break consumers of ``old``; empty when it is compatible.  ``connect``: the stream
    publishes Kafka Connect JSON (format connect-json), so Connect type changes count too."""
    problems: list[str] = []
    if list(old.key) != list(new.key):
        problems.append(f"key changed from ({', '.join(old.key)}) to ({', '.join(new.key)})")
    added = [f for f in new.fields if old.field(f.name) is None]
    for gone in (f for f in old.fields if new.field(f.name) is None):
        twin = next((f.name for f in added if f.kind == gone.kind), None)
        problems.append(f"{gone.name}: dropped" + (f" (renamed to {twin}?)" if twin else ""))
    for field in added:
        if not field.nullable:
            problems.append(f"{field.name}: added as required, but published events lack it (add it as nullable)")
    for before in old.fields:
        after = new.field(before.name)
        if after is not None:
            problems.extend(f"{before.name}: {why}" for why in field_incompatibilities(before, after, connect=connect))
    return problems


def field_incompatibilities(old: FieldSchema, new: FieldSchema, *, connect: bool = False) -> list[str]:
    if old.kind != new.kind:
        if (old.kind, new.kind) in _PROMOTIONS:
            return []
        return [f"type changed from {old.kind} to {new.kind}"]
    problems = []
    if (
        connect
        and old.source_type is not None
        and new.source_type is not None
        and (was := _connect_type(old)) != (now := _connect_type(new))
        and (was, now) not in _CONNECT_PROMOTIONS
    ):
        problems.append(f"Connect type changed from {was} to {now} (source type {old.source_type} → {new.source_type})")
    if old.nullable and not new.nullable:
        problems.append("narrowed: no longer nullable")
    if _smaller(old.bits, new.bits):
        problems.append(f"narrowed: integer from {old.bits} to {new.bits} bits")
    if (
        _smaller(old.precision, new.precision)
        or _smaller(old.scale, new.scale)
        or _smaller(_integer_digits(old), _integer_digits(new))
    ):
        problems.append(f"narrowed: decimal from ({old.precision}, {old.scale}) to ({new.precision}, {new.scale})")
    if _smaller(old.max_length, new.max_length):
        problems.append(f"narrowed: max length from {old.max_length or 'unlimited'} to {new.max_length}")
    if new.ge is not None and (old.ge is None or new.ge > old.ge):
        problems.append(f"narrowed: minimum raised from {old.ge} to {new.ge}")
    if new.le is not None and (old.le is None or new.le < old.le):
        problems.append(f"narrowed: maximum lowered from {old.le} to {new.le}")
    if new.enum is not None and (old.enum is None or not set(old.enum) <= set(new.enum)):
        removed = sorted(map(str, set(old.enum or ()) - set(new.enum))) if old.enum is not None else ["any value"]
        problems.append(f"narrowed: allowed values lost {', '.join(removed)}")
    return problems


def changes(old: StreamSchema, new: StreamSchema) -> list[str]:
    """A short account of every difference, compatible or not, for the schema history."""
    described = [
        f"{f.name}: added{'' if f.nullable else ' as required'}" for f in new.fields if old.field(f.name) is None
    ]
    described += [f"{f.name}: dropped" for f in old.fields if new.field(f.name) is None]
    for before in old.fields:
        after = new.field(before.name)
        if after is not None and after != before:
            diff = {k: (v, getattr(after, k)) for k, v in before.to_dict().items() if getattr(after, k) != v}
            diff.update({k: (None, v) for k, v in after.to_dict().items() if k not in before.to_dict()})
            described.append(f"{before.name}: " + ", ".join(f"{k} {a!r} → {b!r}" for k, (a, b) in sorted(diff.items())))
    return described


def _connect_type(field: FieldSchema) -> str:
    """The field's Kafka Connect type and semantic name, which a Connect sink builds its column from."""
    schema = connect_field_type(field)
    return f"{schema['type']}" + (f" {schema['name']}" if "name" in schema else "")


def _smaller(old: int | None, new: int | None) -> bool:
    """True when a limit appears or shrinks (None means unlimited)."""
    return new is not None and (old is None or new < old)


def _integer_digits(field: FieldSchema) -> int | None:
    if field.precision is None:
        return None
    return field.precision - (field.scale or 0)
