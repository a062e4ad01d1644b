"""The ``liberation`` command line: the same core as Dagster, without the UI."""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
import traceback
from collections.abc import Sequence

REPORT_BUGS_AT = "https://github.com/liberation/liberation/issues"


def _spec(args: argparse.Namespace):
    from liberation_assets.core.spec import load_spec

    return load_spec(args.spec)


def _needs(spec, *, sources: Sequence[str] = (), kafka: bool = False) -> None:
    from liberation_assets.core.failures import preflight

    preflight(spec, sources=sources, kafka=kafka)


def cmd_stack(args: argparse.Namespace) -> int:
    from liberation_assets import stack

    settings = stack.default_settings()
    if args.action == "up":
        stack.up(settings)
    elif args.action == "down":
        stack.down(settings)
        print("stack down")
    else:
        states = stack.status(settings)
        for name, ok in states.items():
            print(f"{name:10s} {'up' if ok else 'down'}")
        return 0 if all(states.values()) else 1
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from liberation_assets.core.connect import check_database
    from liberation_assets.core.failures import involve
    from liberation_assets.core.publish.topics import check_broker
    from liberation_assets.core.source_check import check_source_objects

    spec = _spec(args)
    print(
        f"spec {args.spec or os.environ.get('LIBERATION_SPEC', 'liberation.yaml')}: ok "
        f"({len(spec.sources)} sources, {len(spec.streams)} streams, {len(spec.outboxes)} outboxes)"
    )
    if args.offline:
        return 0
    involve(spec, *spec.sources)
    check_broker(spec.kafka.resolved_bootstrap_servers(), timeout=spec.kafka.connect_timeout.total_seconds())
    print(f"kafka {spec.kafka.resolved_bootstrap_servers()}: ok")
    problems = 0
    for name, source in spec.sources.items():
        check_database(name, source)
        found = check_source_objects(spec, name)
        for problem in found:
            print(f"source {name} {source.safe_url()}: {problem}", file=sys.stderr)
        problems += len(found)
        if not found:
            print(f"source {name} {source.safe_url()}: ok")
    return 2 if problems else 0


def _progress_bar(label: str):
    from tqdm import tqdm

    bar = tqdm(
        desc=label,
        unit="rows",
        dynamic_ncols=True,
        disable=not sys.stderr.isatty() and not os.environ.get("LIBERATION_PROGRESS"),
    )

    def update(done: int, total: int | None) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return bar, update


def cmd_run(args: argparse.Namespace) -> int:
    from liberation_assets.core.engine.query_pattern import QueryPattern

    spec = _spec(args)
    if args.stream not in spec.streams:
        print(f"liberation: error: unknown stream {args.stream!r}; streams: {', '.join(spec.streams)}", file=sys.stderr)
        return 2
    _needs(spec, sources=[spec.streams[args.stream].source], kafka=True)
    pattern = QueryPattern(spec, args.stream)
    try:
        if args.snapshot:
            bar, update = _progress_bar(f"snapshot {args.stream}")
            with bar:
                summary = pattern.snapshot(progress=update, restart=args.restart)
        elif args.reconcile:
            summary = pattern.reconcile()
        else:
            summary = pattern.incremental()
    finally:
        pattern.close()
    print(" ".join(f"{k}={v}" for k, v in summary.metadata().items()))
    return 0


def cmd_follow(args: argparse.Namespace) -> int:
    """Run a source's log reader or an outbox relay continuously, for low latency."""
    from liberation_assets.core.failures import involve

    spec = _spec(args)
    _wait_for_broker(spec, args.give_up_after)
    if args.name in spec.outboxes:
        from liberation_assets.core.engine import outbox_relay

        involve(spec, spec.outboxes[args.name].source)
        return _call_follow(outbox_relay.follow, spec, args.name, args) or 0
    if args.name not in spec.sources:
        print(
            f"liberation: error: unknown source or outbox {args.name!r}; sources: {', '.join(spec.sources)}; "
            f"outboxes: {', '.join(spec.outboxes) or '(none)'}",
            file=sys.stderr,
        )
        return 2
    involve(spec, args.name)
    if spec.sources[args.name].dialect == "postgresql":
        from liberation_assets.core.engine import cdc_postgres

        return _call_follow(cdc_postgres.follow, spec, args.name, args) or 0
    from liberation_assets.core.engine import cdc_mysql

    return _call_follow(cdc_mysql.follow, spec, args.name, args, resnapshot=args.resnapshot) or 0


def _wait_for_broker(spec, give_up_after: float | None) -> None:
    """A long-running command waits for its broker, up to the give-up time (forever without one)."""
    import time

    from liberation_assets.core.errors import ConnectivityError
    from liberation_assets.core.failures import involve
    from liberation_assets.core.publish.topics import check_broker

    involve(spec)
    if give_up_after is None and (env := os.environ.get("LIBERATION_GIVE_UP_AFTER")):
        give_up_after = float(env)
    started, said = time.monotonic(), False
    bootstrap = spec.kafka.resolved_bootstrap_servers()
    while True:
        try:
            check_broker(bootstrap, timeout=spec.kafka.connect_timeout.total_seconds())
            return
        except ConnectivityError as exc:
            waited = time.monotonic() - started
            if give_up_after is not None and waited >= give_up_after:
                raise ConnectivityError(
                    f"{exc} Gave up after {waited:.0f}s (--give-up-after {give_up_after:g})."
                ) from None
            if not said:
                print(f"liberation: waiting for the Kafka broker at {bootstrap}", file=sys.stderr, flush=True)
                said = True
            time.sleep(1.0 if give_up_after is None else min(1.0, max(0.0, give_up_after - waited)))


def _call_follow(follow, spec, name: str, args: argparse.Namespace, **options) -> int:
    """Call a runner's follow with the give-up time when the runner supports one (the runners own the retry loop)."""
    if args.give_up_after is not None and "give_up_after" in inspect.signature(follow).parameters:
        options["give_up_after"] = args.give_up_after
    return follow(spec, name, duration=args.duration, **options)


def cmd_outbox(args: argparse.Namespace) -> int:
    """The outbox migration: create the table, or print its DDL for your own migration tool."""
    from liberation_assets.core.connect import create_source_engine
    from liberation_assets.core.outbox.table import create_outbox_table, migration_sql

    spec = _spec(args)
    if args.name not in spec.outboxes:
        print(f"liberation: error: unknown outbox {args.name!r}; outboxes: {', '.join(spec.outboxes)}", file=sys.stderr)
        return 2
    outbox = spec.outboxes[args.name]
    source = spec.sources[outbox.source]
    if args.sql:
        print(";\n".join(migration_sql(outbox, source.dialect)) + ";")
        return 0
    _needs(spec, sources=[outbox.source])
    engine = create_source_engine(source)
    try:
        create_outbox_table(engine, outbox)
    finally:
        engine.dispose()
    print(f"outbox {args.name}: table {outbox.table} ready in {source.safe_url()}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from liberation_assets.core.verify.run import verify

    spec = _spec(args)
    if args.stream in spec.streams:
        _needs(spec, sources=[spec.streams[args.stream].source], kafka=True)
    verification = verify(spec, args.stream, replica=args.replica, rebuild=args.rebuild)
    print(verification.lag.describe())
    return 0 if verification.passes(strict=args.strict) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from liberation_assets.demo.cli import run_demo

    return run_demo(args)


def cmd_seed(args: argparse.Namespace) -> int:
    from liberation_assets.demo.cli import seed_demo

    return seed_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liberation", description="Liberate database tables into Kafka event streams."
    )
    parser.add_argument("--spec", default=None, help="spec file (default: $LIBERATION_SPEC or ./liberation.yaml)")
    parser.add_argument("--verbose", "-v", action="store_true", help="also show librdkafka's own log lines on stderr")
    parser.add_argument(
        "--log-file",
        default=os.environ.get("LIBERATION_LOG_FILE"),
        help="append librdkafka's log lines to this file (default: $LIBERATION_LOG_FILE; else dropped)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="start, stop or inspect the local Kafka, PostgreSQL and MariaDB")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("check", help="validate the spec and reach every broker and database")
    p.add_argument("--offline", action="store_true", help="validate the spec only")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="run one stream's snapshot, incremental poll or reconciliation")
    p.add_argument("stream")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--snapshot", action="store_true")
    mode.add_argument("--incremental", action="store_true")
    mode.add_argument("--reconcile", action="store_true")
    p.add_argument("--restart", action="store_true", help="snapshot from scratch instead of resuming")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("follow", help="stream a source's change log or relay an outbox continuously")
    p.add_argument("name", help="a source (CDC) or an outbox name")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument(
        "--give-up-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="end with exit 2 after this many seconds of uninterrupted retriable errors "
        "(default: $LIBERATION_GIVE_UP_AFTER, else never); a wrong password ends it at once",
    )
    p.add_argument(
        "--resnapshot",
        action="store_true",
        help="MySQL/MariaDB: discard the stored binlog position and snapshot again (after PositionLost)",
    )
    p.set_defaults(func=cmd_follow)

    p = sub.add_parser("outbox", help="create an outbox table (its migration), or print the DDL with --sql")
    p.add_argument("name", help="an outbox of the spec")
    p.add_argument("--sql", action="store_true", help="print the DDL instead of running it")
    p.set_defaults(func=cmd_outbox)

    p = sub.add_parser("verify", help="rebuild a stream's replica from its topic and compare it with the source")
    p.add_argument("stream")
    p.add_argument(
        "--replica",
        default=None,
        help="replica database URL (default: $LIBERATION_REPLICA_URL or .stack/replicas/<topic>.sqlite)",
    )
    p.add_argument("--rebuild", action="store_true", help="rebuild the replica from the topic's beginning")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 on any difference, documented lag too (rows changed after the last poll, hard deletes awaiting the reconcile)",
    )
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("seed", help="create and seed the demo shop databases")
    p.add_argument("--products", type=int, default=int(os.environ.get("LIBERATION_DEMO_PRODUCTS", "20000")))
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser(
        "demo", help="stack up, seed the demo shop, liberate it through every pattern and serve the Dagster UI"
    )
    p.add_argument("--products", type=int, default=int(os.environ.get("LIBERATION_DEMO_PRODUCTS", "20000")))
    p.add_argument("--port", type=int, default=int(os.environ.get("LIBERATION_UI_PORT", "3000")))
    p.add_argument("--no-ui", action="store_true", help="run the main job and exit instead of serving the UI")
    p.add_argument("--reset", action="store_true", help="drop the demo databases, topics and positions first")
    p.set_defaults(func=cmd_demo)

    from liberation_assets.cli_contract import register as register_contract_commands

    register_contract_commands(sub)  # quarantine, redrive, schema
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    """librdkafka's log lines: to the log file and, with --verbose, to stderr; otherwise nowhere."""
    from liberation_assets.core.failures import KAFKA_LOGGER

    logger = logging.getLogger(KAFKA_LOGGER)
    logger.setLevel(logging.DEBUG)
    formatter = logging.Formatter("%(asctime)s librdkafka %(message)s")
    handlers: list[logging.Handler] = []
    if getattr(args, "log_file", None):
        handlers.append(logging.FileHandler(args.log_file, encoding="utf-8"))
    if getattr(args, "verbose", False):
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)


def failure_line(exc: BaseException) -> str | None:
    """The one line for an expected failure, or None for a bug."""
    from liberation_assets.core.failures import describe_failure
    from liberation_assets.stack import StackError

    if isinstance(exc, StackError):
        return f"stack: {exc}"
    return describe_failure(exc)


def main(argv: Sequence[str] | None = None) -> int:
    from liberation_assets.core.failures import involved

    args = build_parser().parse_args(argv)
    involved.spec, involved.sources = None, []  # what this command talks to; recorded as it goes
    try:
        _configure_logging(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - every expected failure is one line; the rest is a bug
        line = failure_line(exc)
        if line is None:
            traceback.print_exc()
            print(
                f"liberation: internal error ({type(exc).__name__}): this is a bug; please report it with the "
                f"traceback above at {REPORT_BUGS_AT}",
                file=sys.stderr,
            )
            return 1
        print(f"liberation: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
