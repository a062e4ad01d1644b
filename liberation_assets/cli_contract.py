"""CLI commands for contracts: ``quarantine``, ``redrive`` and ``schema`` (the CLI layer: it may use every core package).

Kept apart from ``cli.py``, which only registers them.  Output is
plain text for people, or JSON with ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson


def _spec_and_stream(args: argparse.Namespace, *, source: bool = False) -> tuple[Any, str] | None:
    """The spec and the stream, with the broker (and the stream's database, if used) reached first."""
    from liberation_assets.core.failures import preflight
    from liberation_assets.core.spec import load_spec

    spec = load_spec(args.spec)
    if args.stream not in spec.streams:
        print(f"liberation: error: unknown stream {args.stream!r}; streams: {', '.join(spec.streams)}", file=sys.stderr)
        return None
    preflight(spec, sources=[spec.streams[args.stream].source] if source else [], kafka=True)
    return spec, args.stream


def _print_json(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


def cmd_quarantine(args: argparse.Namespace) -> int:
    """Counts by check of the open quarantine, and optionally its first rows."""
    from liberation_assets.core.contract.quarantine import summarize

    found = _spec_and_stream(args)
    if found is None:
        return 2
    summary = summarize(found[0], found[1], list_rows=args.list)
    rows: list[dict[str, Any]] = [
        {
            "partition": r.partition,
            "offset": r.offset,
            "stream": r.value.get("stream"),
            "key": r.value.get("key"),
            "op": r.value.get("op"),
            "columns": r.value.get("columns"),
            "poison": r.poison,
            "failed_checks": r.value.get("failed_checks"),
            "row": r.value.get("row"),
        }
        for r in summary.rows
    ]
    if args.json:
        _print_json({**summary.metadata(), "topic": summary.topic, "by_check": dict(summary.by_check), "rows": rows})
        return 0
    print(
        f"{summary.topic}: {summary.total} records, {summary.open} open "
        f"(re-drive so far: {summary.republished} republished, {summary.superseded} superseded, "
        f"{summary.requarantined} quarantined again)"
    )
    for check, count in summary.by_check.most_common():
        print(f"  {count:8d}  {check}")
    for row in rows:
        print(
            f"  [{row['partition']}:{row['offset']}] stream={row['stream']} key={orjson.dumps(row['key']).decode()} "
            f"{'(poison: stays until the source row changes) ' if row['poison'] else ''}{'; '.join(row['failed_checks'] or [])}"
        )
    return 0


def cmd_redrive(args: argparse.Namespace) -> int:
    """Republish what now passes; what still fails stays quarantined."""
    from liberation_assets.core.engine.redrive import redrive

    found = _spec_and_stream(args, source=True)
    if found is None:
        return 2
    summary = redrive(found[0], found[1])
    print(" ".join(f"{k}={v}" for k, v in summary.metadata().items()))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Show the published schema and the pending change, or accept an incompatible change on purpose."""
    from liberation_assets.core.connect import create_source_engine
    from liberation_assets.core.contract.gate import accept, evaluate
    from liberation_assets.core.contract.history import SchemaHistory

    found = _spec_and_stream(args, source=not args.history)
    if found is None:
        return 2
    spec, name = found
    if args.history:
        _print_json([v.to_dict() for v in SchemaHistory.for_spec(spec).versions(name)])
        return 0
    engine = create_source_engine(spec.sources[spec.streams[name].source])
    try:
        if args.accept_incompatible:
            version = accept(spec, name, engine)
            print(
                f"stream {name}: schema version {version.version} registered"
                + (f", accepting: {'; '.join(version.accepted_incompatible)}" if version.accepted_incompatible else "")
            )
            return 0
        decision = evaluate(spec, name, engine)
    finally:
        engine.dispose()
    if args.format == "json-schema":
        _print_json(decision.schema.json_schema())
    elif args.format == "avro":
        _print_json(decision.schema.avro())
    elif args.format == "connect":
        from liberation_assets.core.contract.connect_json import connect_schemas

        _print_json(connect_schemas(decision.schema, spec.topic_for(name)))
    else:
        print(decision.describe())
    return 0 if decision.compatible else 1


def register(sub: Any) -> None:
    """Add the contract commands to the ``liberation`` parser's subcommands."""
    p = sub.add_parser("quarantine", help="summarize a stream's quarantine: counts by failed check, and rows")
    p.add_argument("stream")
    p.add_argument("--list", type=int, default=0, metavar="N", help="also show the first N open rows")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_quarantine)

    p = sub.add_parser("redrive", help="republish quarantined rows that pass the current contract, in order, once")
    p.add_argument("stream")
    p.set_defaults(func=cmd_redrive)

    p = sub.add_parser("schema", help="compare a stream's schema with the published one; show or accept it")
    p.add_argument("stream")
    p.add_argument("--format", choices=["text", "json-schema", "avro", "connect"], default="text")
    p.add_argument("--history", action="store_true", help="print every published version")
    p.add_argument(
        "--accept-incompatible",
        action="store_true",
        help="register the current schema even though it breaks consumers (after telling them)",
    )
    p.set_defaults(func=cmd_schema)
