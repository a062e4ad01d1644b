"""Every CLI command × {wrong password, closed port, unreachable broker}: exit 2, one line, the right address, no secret.

Run in-process (``main``) so each case costs a connection attempt, not an interpreter start; the
broker case uses a port nothing listens on with ``kafka.connect_timeout: 1s``.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from liberation_assets.cli import main
from liberation_assets.core.connect import cached_engine
from liberation_assets.stack import StackSettings
from liberation_tests.support import free_port, mysql_admin, pg_admin, write_spec

pytestmark = pytest.mark.integration


def closed_port() -> int:
    """A port that was free a moment ago: connecting to it is refused at once."""
    return free_port()


def distinctive_password() -> str:
    """A password that is easy to search for and needs URL escaping: @ : / % all in it."""
    return f"Dist@nct:pw/{uuid.uuid4().hex[:8]}%x"


@dataclass
class Fixture:
    spec_path: str
    pg_role: str
    pg_password: str
    pg_database: str
    mysql_database: str
    stack: StackSettings


def create_pg_role(stack: StackSettings, database: str, role: str, password: str) -> None:
    """A login role owning the test's tables; its password is sent hashed, so no server log can hold it."""
    with pg_admin(stack, database) as admin:
        verifier = admin.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
        admin.execute(f"CREATE ROLE \"{role}\" LOGIN REPLICATION PASSWORD '{verifier}'")
        admin.execute("CREATE TABLE t (id int PRIMARY KEY, name text, updated_at timestamptz NOT NULL DEFAULT now())")
        admin.execute("INSERT INTO t (id, name) SELECT g, 'n' || g FROM generate_series(1, 20) g")
        admin.execute(f'ALTER TABLE t OWNER TO "{role}"')
        admin.execute(f'GRANT CREATE ON DATABASE "{database}" TO "{role}"')
        admin.execute(f'GRANT ALL ON SCHEMA public TO "{role}"')
        admin.execute(f'GRANT pg_read_all_stats TO "{role}"')


def drop_pg_role(stack: StackSettings, database: str, role: str) -> None:
    with pg_admin(stack, database) as admin:
        admin.execute(f'REASSIGN OWNED BY "{role}" TO "{stack.pg_user}"')
        admin.execute(f'DROP OWNED BY "{role}"')
    with pg_admin(stack) as admin:
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')


SPEC = """\
kafka:
  bootstrap_servers: ${{T_KAFKA:-{kafka}}}
  topic_prefix: {prefix}
  positions_topic: {prefix}.positions
  connect_timeout: 1s
sources:
  pg:
    url: postgresql+psycopg://{role}:${{T_PG_PASSWORD}}@127.0.0.1:${{T_PG_PORT:-{pg_port}}}/{pg_db}
  my:
    url: mysql+pymysql://{my_user}:${{T_MY_PASSWORD}}@127.0.0.1:${{T_MY_PORT:-{my_port}}}/{my_db}
streams:
  t:
    source: pg
    table: t
    key: [id]
  t_cdc:
    source: pg
    table: t
    key: [id]
    patterns: [cdc]
    topic: {prefix}.cdc.t
  m:
    source: my
    table: m
    key: [id]
  m_cdc:
    source: my
    table: m
    key: [id]
    patterns: [cdc]
    topic: {prefix}.cdc.m
outboxes:
  ob:
    source: pg
"""


def write_template_spec(tmp_path, stack: StackSettings, *, role: str, pg_db: str, my_db: str) -> str:
    path = tmp_path / "liberation.yaml"
    path.write_text(
        SPEC.format(
            kafka=stack.kafka_bootstrap,
            prefix=f"t{uuid.uuid4().hex[:8]}",
            role=role,
            pg_port=stack.pg_port,
            pg_db=pg_db,
            my_user=stack.mysql_user,
            my_port=stack.mysql_port,
            my_db=my_db,
        )
    )
    return str(path)


@pytest.fixture
def operr(stack, pg_database, mysql_database, tmp_path, monkeypatch) -> Iterator[Fixture]:
    role, password = f"op_{uuid.uuid4().hex[:8]}", distinctive_password()
    create_pg_role(stack, pg_database, role, password)
    connection = mysql_admin(stack, mysql_database)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE m (id INT PRIMARY KEY, updated_at DATETIME(6) NOT NULL DEFAULT NOW(6))")
    connection.close()
    monkeypatch.setenv("T_PG_PASSWORD", password)
    monkeypatch.setenv("T_MY_PASSWORD", stack.mysql_password)
    cached_engine.cache_clear()
    yield Fixture(
        write_template_spec(tmp_path, stack, role=role, pg_db=pg_database, my_db=mysql_database),
        role,
        password,
        pg_database,
        mysql_database,
        stack,
    )
    cached_engine.cache_clear()
    drop_pg_role(stack, pg_database, role)


def _follow_gives_up() -> bool:
    from liberation_assets.core.engine import outbox_relay

    return "give_up_after" in inspect.signature(outbox_relay.follow).parameters


# command, the source it names on a database failure (None: it uses no database), whether it uses the broker
COMMANDS: list[tuple[list[str], str | None, bool]] = [
    (["check"], "pg", True),
    (["run", "t", "--snapshot"], "pg", True),
    (["run", "t", "--incremental"], "pg", True),
    (["run", "t", "--reconcile"], "pg", True),
    (["run", "m", "--snapshot"], "my", True),
    (["verify", "t"], "pg", True),
    (["outbox", "ob"], "pg", False),
    (["schema", "t"], "pg", True),
    (["redrive", "t"], "pg", True),
    (["quarantine", "t"], None, True),
    (["follow", "pg", "--duration", "5", "--give-up-after", "1"], "pg", True),
    (["follow", "my", "--duration", "5", "--give-up-after", "1"], "my", True),
    (["follow", "ob", "--duration", "5", "--give-up-after", "1"], "pg", True),
    (["seed", "--products", "10"], "pg", False),
]
CASES = [
    pytest.param(command, source, failure, id=f"{'-'.join(command[:2])}-{failure}")
    for command, source, uses_kafka in COMMANDS
    for failure in ("wrong_password", "closed_port", "unreachable_broker")
    if (failure == "unreachable_broker" and uses_kafka) or (failure != "unreachable_broker" and source)
]


@pytest.mark.parametrize(("command", "source", "failure"), CASES)
def test_each_command_fails_in_one_line_naming_the_address(
    operr: Fixture, command, source, failure, capfd, monkeypatch
) -> None:
    if command[:2] == ["follow", "ob"] and not _follow_gives_up():
        pytest.skip("the outbox relay's give-up comes with the runners' retry loop (branch one-runner)")
    wrong = f"wrong-{operr.pg_password}"
    port = closed_port()
    if failure == "wrong_password":
        monkeypatch.setenv("T_PG_PASSWORD", wrong)
        monkeypatch.setenv("T_MY_PASSWORD", wrong)
    elif failure == "closed_port":
        monkeypatch.setenv("T_PG_PORT", str(port))
        monkeypatch.setenv("T_MY_PORT", str(port))
    else:
        monkeypatch.setenv("T_KAFKA", f"127.0.0.1:{port}")

    code = main(["--spec", operr.spec_path, *command])

    out, err = capfd.readouterr()
    everything = out + err
    errors = [line for line in err.splitlines() if line.startswith("liberation: error:")]
    assert code == 2, everything
    assert len(errors) == 1, everything
    assert "Traceback" not in everything and "%3|" not in everything and "sqlalche.me" not in everything
    assert operr.pg_password not in everything and wrong not in everything
    for secret in (operr.pg_password, wrong):
        assert secret.replace("@", "%40").replace(":", "%3A").replace("/", "%2F") not in everything
    [line] = errors
    if failure == "unreachable_broker":
        assert f"Kafka broker at 127.0.0.1:{port}" in line, line
    else:
        expected_port = (
            port if failure == "closed_port" else (operr.stack.pg_port if source == "pg" else operr.stack.mysql_port)
        )
        scheme, user, db = (
            ("postgresql+psycopg", operr.pg_role, operr.pg_database)
            if source == "pg"
            else ("mysql+pymysql", operr.stack.mysql_user, operr.mysql_database)
        )
        if command[0] == "seed":
            db = operr.pg_database
        assert f"source '{source}' at {scheme}://{user}:***@127.0.0.1:{expected_port}/{db}" in line, line


def _files_under(root) -> list:
    from pathlib import Path

    return [path for path in Path(root).rglob("*") if path.is_file()]


def _topic_bytes(bootstrap: str) -> list[bytes]:
    """Every record of every topic on the broker: key, value and each header, read committed and uncommitted."""
    from confluent_kafka import Consumer, TopicPartition

    found: list[bytes] = []
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"leak-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
            "enable.partition.eof": True,
        }
    )
    try:
        topics = consumer.list_topics(timeout=10).topics
        partitions = []
        for name, topic in topics.items():
            for partition in topic.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)
                if high > low:
                    partitions.append(TopicPartition(name, partition, low))
        consumer.assign(partitions)
        remaining = {(p.topic, p.partition) for p in partitions}
        while remaining:
            for message in consumer.consume(1000, timeout=5):
                if message.error():
                    remaining.discard((message.topic(), message.partition()))
                    continue
                found += [message.key() or b"", message.value() or b""]
                found += [(k or "").encode() + b"=" + (v or b"") for k, v in (message.headers() or [])]
            else:
                if not remaining:
                    break
    finally:
        consumer.close()
    return found


def test_a_distinctive_password_appears_nowhere(operr: Fixture, tmp_path, capfd, monkeypatch) -> None:
    """A failing and a succeeding pipeline, by CLI and by Dagster; then every output and store is searched."""
    from urllib.parse import quote

    import dagster as dg

    from liberation_assets.orchestration import query
    from liberation_assets.orchestration.resources import build_resources

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("")
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    assert main(["--spec", operr.spec_path, "outbox", "ob"]) == 0
    assert main(["--spec", operr.spec_path, "check"]) == 0
    assert main(["--spec", operr.spec_path, "run", "t", "--snapshot"]) == 0
    assert main(["--spec", operr.spec_path, "run", "t", "--incremental"]) == 0

    from liberation_assets.core.spec import load_spec

    spec = load_spec(operr.spec_path)
    [snapshot] = [
        a
        for a in query.definitions(spec).assets
        if isinstance(a, dg.AssetsDefinition) and a.key == query.asset_key("t", "snapshot")
    ]
    with dg.DagsterInstance.get() as instance:
        ok = dg.materialize(
            [snapshot], instance=instance, resources=build_resources(operr.spec_path), tags={"liberation/test": "leak"}
        )
        assert ok.success
        cached_engine.cache_clear()
        monkeypatch.setenv("T_PG_PASSWORD", f"wrong-{operr.pg_password}")
        assert main(["--spec", operr.spec_path, "run", "t", "--snapshot", "--restart"]) == 2
        failed = dg.materialize(
            [snapshot], instance=instance, resources=build_resources(operr.spec_path), raise_on_error=False
        )
        assert not failed.success
        cached_engine.cache_clear()

    out, err = capfd.readouterr()
    secrets = {operr.pg_password, f"wrong-{operr.pg_password}"}
    forms = {form.encode() for secret in secrets for form in (secret, quote(secret, safe=""), quote(secret))}
    searched = {"stdout": [out.encode()], "stderr": [err.encode()]}
    searched |= {f"dagster: {path}": [path.read_bytes()] for path in _files_under(home)}
    logs = [path for path in _files_under(operr.stack.root) if "logs" in path.parts or path.suffix == ".log"]
    assert logs, "the stack keeps its logs under its folder"
    searched |= {f"stack log: {path}": [path.read_bytes()] for path in logs}
    searched["every topic"] = _topic_bytes(operr.stack.kafka_bootstrap)
    leaks = [where for where, blobs in searched.items() for blob in blobs for form in forms if form in blob]
    assert not leaks, leaks
    assert any(b"source 'pg' at" in blob for blob in searched["stderr"])  # the failure was reported, without it


def test_outbox_follow_ends_on_sigterm_with_its_summary(make_spec, pg_engine, pg_database, tmp_path) -> None:
    """SIGTERM: the relay finishes the transaction in flight, prints its summary and exits 0 (not killed by the signal)."""

    from liberation_assets.core.outbox import create_outbox_table
    from liberation_tests.core.outbox.support import RelayProcess, outbox_spec

    if not _follow_gives_up():
        pytest.skip("the outbox relay's SIGTERM handling comes with the runners' retry loop (branch one-runner)")
    spec = outbox_spec(make_spec, pg=pg_database)
    create_outbox_table(pg_engine, spec.outboxes["ob"])
    relay = RelayProcess(write_spec(spec, tmp_path))
    relay.wait_relaying()
    code = relay.stop(timeout=60)
    assert code == 0, relay.tail()
    assert "recovered_after_crash=" in "\n".join(relay.stdout)  # the summary line
    assert relay.seen("stopped"), relay.tail()  # and the status line


def test_online_check_finds_a_missing_key_column(operr: Fixture, capfd) -> None:
    """A key column `nope` used to pass check and fail only at run."""
    path = operr.spec_path.replace("liberation.yaml", "nope.yaml")
    with open(operr.spec_path) as original, open(path, "w") as changed:
        changed.write(original.read().replace("    table: t\n    key: [id]\n", "    table: t\n    key: [nope]\n", 1))
    assert main(["--spec", path, "outbox", "ob"]) == 0
    assert main(["--spec", path, "check"]) == 2
    err = capfd.readouterr().err
    assert "stream t: table t has no column nope" in err and operr.pg_password not in err


def test_online_check_names_each_missing_right_and_its_grant(operr: Fixture, capfd, monkeypatch) -> None:
    """A role that may log in but owns nothing, reads nothing and may not replicate."""
    weak, password = f"weak_{uuid.uuid4().hex[:8]}", distinctive_password()
    stack = operr.stack
    with pg_admin(stack, operr.pg_database) as admin:
        verifier = admin.pgconn.encrypt_password(password.encode(), weak.encode(), b"scram-sha-256").decode()
        admin.execute(f"CREATE ROLE \"{weak}\" LOGIN PASSWORD '{verifier}'")
        admin.execute("CREATE TABLE outbox_probe (id int)")  # nothing else: the weak role sees t but may not read it
    try:
        path = operr.spec_path.replace("liberation.yaml", "weak.yaml")
        with open(operr.spec_path) as original, open(path, "w") as changed:
            text = original.read().replace(f"//{operr.pg_role}:", f"//{weak}:")
            changed.write(text.replace("outboxes:\n  ob:\n    source: pg\n", "outboxes: {}\n"))
        monkeypatch.setenv("T_PG_PASSWORD", password)
        assert main(["--spec", path, "check"]) == 2
        err = capfd.readouterr().err
        assert f"GRANT SELECT ON t TO {weak}" in err
        assert f"GRANT pg_read_all_stats TO {weak}" in err
        assert f"ALTER ROLE {weak} WITH REPLICATION" in err
        assert "CREATE PUBLICATION liberation_pg FOR TABLE" in err
        assert 'ALTER TABLE "public"."t" REPLICA IDENTITY FULL' in err
        assert password not in err
    finally:
        with pg_admin(stack) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{weak}"')
