"""``liberation seed`` and ``liberation demo``: the demo shop from a fresh clone to a running UI."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import URL

from liberation_assets.core.failures import kafka_logger
from liberation_assets.core.spec import Spec, load_spec
from liberation_assets.demo import generator, schema

REPO = Path(__file__).resolve().parents[2]


def _server_url(url: URL) -> URL:
    """The same server, but the maintenance database, to create the demo database from."""
    if url.get_backend_name() == "postgresql":
        return url.set(database="postgres")
    return url.set(database="information_schema")


def ensure_database(url: URL) -> None:
    engine = sa.create_engine(_server_url(url), isolation_level="AUTOCOMMIT")
    name = url.database
    with engine.connect() as connection:
        if url.get_backend_name() == "postgresql":
            exists = connection.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            if not exists:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        else:
            connection.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"))
    engine.dispose()


def seed_spec_sources(spec: Spec, products: int, log=print) -> None:
    """Create every source database of the spec with the demo schema, seeded once."""
    from liberation_assets.core.connect import create_source_engine

    for name, source in spec.sources.items():
        url = source.resolved_url()
        ensure_database(url)
        engine = create_source_engine(source)
        schema.create_schema(engine)
        with engine.connect() as connection:
            existing = connection.execute(sa.select(sa.func.count()).select_from(schema.products)).scalar_one()
        if existing == 0:
            report = generator.seed(engine, products_count=products, orders_count=products // 2)
            breakers = generator.seed_contract_breakers(engine)
            log(
                f"seeded {name}: {report.total} rows ({report}), and {breakers} products in the category 'gadgets' "
                "that break the contract (see `liberation quarantine products`)"
            )
        else:
            log(f"{name} already seeded ({existing} products)")
        for outbox in spec.outboxes.values():
            if outbox.source == name:
                from liberation_assets.core.outbox import create_outbox_table

                create_outbox_table(engine, outbox)
        engine.dispose()


def reset_demo(spec: Spec, log=print) -> None:
    """Drop the demo databases (and their slots), the spec's topics and its positions: a clean slate."""
    from confluent_kafka.admin import AdminClient

    for name, source in spec.sources.items():
        url = source.resolved_url()
        engine = sa.create_engine(_server_url(url), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            if url.get_backend_name() == "postgresql":
                connection.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = :d AND active_pid IS NOT NULL"
                    ),
                    {"d": url.database},
                )
                connection.execute(
                    sa.text("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = :d"),
                    {"d": url.database},
                )
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            else:
                connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{url.database}`"))
        engine.dispose()
        log(f"dropped database {url.database} of {name}")
    admin = AdminClient({"logger": kafka_logger(), "bootstrap.servers": spec.kafka.resolved_bootstrap_servers()})
    prefix = spec.kafka.topic_prefix + "."
    topics = [
        t
        for t in admin.list_topics(timeout=10).topics
        if t.startswith(prefix) or t == spec.kafka.positions_topic or t.startswith("outbox.event.")
    ]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result()
        log(f"deleted {len(topics)} topics")
    time.sleep(2)  # topic deletion completes asynchronously


def seed_demo(args: argparse.Namespace) -> int:
    from liberation_assets.core.failures import involve

    spec = load_spec(args.spec)
    involve(spec, *spec.sources)
    seed_spec_sources(spec, args.products)
    return 0


def _dagster_home() -> Path:
    """The demo's instance: run, event and schedule storage in the stack's PostgreSQL (demo/instance.py)."""
    from liberation_assets import stack
    from liberation_assets.demo.instance import use_home

    return use_home(Path(os.environ.get("DAGSTER_HOME") or REPO / ".dagster_home"), stack.default_settings())


MAIN_JOB_NAME = "liberate_all"


def run_main_job() -> bool:
    """In-process on the persistent instance, so the UI shows the runs: first each continuous source's and outbox's
    catch-up job (its snapshot; no follower runs yet, the daemon starts them later), then the main job, which
    leaves their assets to the followers and verifies every replica."""
    import dagster as dg

    from liberation_assets.core.spec import default_spec_path
    from liberation_assets.definitions import defs
    from liberation_assets.orchestration import continuous
    from liberation_assets.orchestration.build import MAIN_JOB

    spec = load_spec(default_spec_path())
    ok = True
    for job in [*(f.catch_up_job_name for f in continuous.followers(spec) if f.keys), MAIN_JOB]:
        result = defs.resolve_job_def(job).execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False)
        for event in result.all_events:
            if event.event_type_value == "ASSET_MATERIALIZATION":
                print(f"  {job}: materialized {event.asset_key.to_user_string()}")
        if not result.success:
            print(f"  {job} FAILED")
        ok &= result.success
    return ok


def writes_paused_file() -> Path:
    """While this file exists the demo's write load pauses (``bench.soak --quiet-minutes`` creates it)."""
    from liberation_assets import stack

    return stack.default_settings().root / "demo-writes.paused"


def _write_loads(spec: Spec, *, pause: float) -> list[generator.WriteLoad]:
    """A write load per source; PostgreSQL orders also emit OrderPlaced through the outbox."""
    from liberation_assets.core.connect import create_source_engine
    from liberation_assets.demo.orders_service import on_order

    loads = []
    for name, source in spec.sources.items():
        has_outbox = any(o.source == name and o.table == "outbox" for o in spec.outboxes.values())
        loads.append(
            generator.WriteLoad(
                create_source_engine(source),
                threads=1,
                pause=pause,
                long_transaction_seconds=0.5,
                on_order=on_order if has_outbox else None,
                paused=writes_paused_file().exists,
            )
        )
    return loads


def _verify_all(spec: Spec) -> bool:
    """``liberation verify`` for every table stream: the replica rebuilt from the topic equals the source, but for documented lag."""
    from liberation_assets.core.verify.run import verify

    ok = True
    for name in spec.streams:
        verification = verify(spec, name)
        ok &= verification.passes()
        print(f"  verify {name}: {verification.lag.describe(limit=3)}")
    return ok


def run_demo(args: argparse.Namespace) -> int:
    """Stack up, seed, a burst of writes, the main job, verification, then the UI with a gentle load."""
    from liberation_assets import stack

    stack.up(stack.default_settings())
    spec_path = args.spec or os.environ.get("LIBERATION_SPEC") or str(REPO / "liberation.yaml")
    os.environ["LIBERATION_SPEC"] = spec_path
    spec = load_spec(spec_path)
    from liberation_assets.core.failures import involve, preflight

    involve(spec, *spec.sources)  # databases are created by the seed, so only named, not reached, first
    preflight(spec, kafka=True)
    if args.reset:
        reset_demo(spec)
    seed_spec_sources(spec, args.products)
    home = _dagster_home()

    print("demo write load for 5 s: inserts, updates, hard deletes, long transactions, outbox events")
    burst = _write_loads(spec, pause=0.01)
    for load in burst:
        load.start()
    time.sleep(5)
    for load in burst:
        load.stop()
    time.sleep(1.5)  # let the last writes fall below every stream's polling ceiling

    print(
        f"running the continuous sources' catch-up jobs, then the main job {MAIN_JOB_NAME} "
        f"(every stream, every pattern); Dagster home {home}"
    )
    ok = run_main_job()
    print("main job " + ("succeeded" if ok else "FAILED: see the run in the UI"))
    ok &= _verify_all(spec)
    if args.no_ui:
        return 0 if ok else 1

    print(f"serving the Dagster UI on http://127.0.0.1:{args.port} (Ctrl-C to stop); a gentle write load keeps running")
    if spec.continuous_sources():  # mode: continuous; the daemon's <name>_follow_sensor sensors start and keep them
        print(
            f"continuous followers (one long-lived run each, jobs <name>_follow): {', '.join(spec.continuous_sources())}"
        )
    writes_paused_file().unlink(missing_ok=True)  # a soak that died mid-quiet must not silence this demo
    gentle = _write_loads(spec, pause=0.5)
    for load in gentle:
        load.start()
    process = start_dg_dev(args.port)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        return process.wait()
    finally:
        stop_tree(process.pid)
        for load in gentle:
            load.stop()


def dg_dev_command(port: int) -> list[str]:
    """``dg dev`` on this project (its component, ``liberation_assets/defs``): the webserver and the daemon."""
    return [str(Path(sys.executable).parent / "dg"), "dev", "--host", "127.0.0.1", "--port", str(port)]


def dg_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for ``dg``: quiet about dagster-dg-cli 1.13.27 beside dagster 1.13.28 (see pyproject's ``dg`` extra)."""
    return {**(os.environ if env is None else env), "PYTHONWARNINGS": "ignore:Found version mismatch"}


def start_dg_dev(port: int, env: dict[str, str] | None = None, log: BinaryIO | None = None) -> subprocess.Popen[bytes]:
    """``dg dev`` on this project, its output into ``log`` if given; end it with ``stop_tree`` (the demo, the screenshots)."""
    stderr = None if log is None else subprocess.STDOUT
    return subprocess.Popen(dg_dev_command(port), cwd=REPO, env=dg_env(env), stdout=log, stderr=stderr)


def process_tree(pid: int) -> list[int]:
    """The process and its descendants, parents first."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            pids.extend(process_tree(int(child)))
    return pids


def stop_tree(pid: int) -> None:
    """Kill a ``dg dev`` and what it started, by PID: its webserver, daemon and code servers ignore SIGTERM."""
    for each in reversed(process_tree(pid)):
        try:
            os.kill(each, signal.SIGKILL)
        except ProcessLookupError:
            pass
