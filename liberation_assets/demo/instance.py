"""The demo's Dagster instance: PostgreSQL storage on the stack's server, the queued run coordinator and its limits.

``liberation demo`` writes ``dagster.yaml`` (a copy of the one beside this
file) into ``$DAGSTER_HOME``, creates the ``dagster`` database, and sets the
``DAGSTER_PG_*`` variables the file reads, so the webserver and the daemon it
starts share one instance.  A ``dagster.yaml`` someone wrote by hand is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from liberation_assets.stack.settings import StackSettings

TEMPLATE = Path(__file__).with_name("dagster.yaml")
MARKER = TEMPLATE.read_text().splitlines()[0]
DAGSTER_DATABASE = "dagster"


def storage_environment(settings: StackSettings, database: str = DAGSTER_DATABASE) -> dict[str, str]:
    """The ``DAGSTER_PG_*`` variables the instance file reads."""
    return {
        "DAGSTER_PG_HOST": settings.pg_host,
        "DAGSTER_PG_PORT": str(settings.pg_port),
        "DAGSTER_PG_USER": settings.pg_user,
        "DAGSTER_PG_PASSWORD": settings.pg_password,
        "DAGSTER_PG_DB": database,
    }


def create_database(settings: StackSettings, database: str = DAGSTER_DATABASE) -> None:
    """Create the instance's database on the stack's PostgreSQL, once."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=settings.pg_host,
        port=settings.pg_port,
        user=settings.pg_user,
        password=settings.pg_password,
        dbname="postgres",
        autocommit=True,
        connect_timeout=10,
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def prepare_home(home: Path, settings: StackSettings, database: str = DAGSTER_DATABASE) -> dict[str, str]:
    """Write the instance file (unless one of someone else's is there), create its database; the variables to set."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    existing = target.read_text() if target.exists() else ""
    if not existing.strip() or existing.startswith(MARKER):
        target.write_text(TEMPLATE.read_text())
    environment = storage_environment(settings, database)
    if "postgres" in target.read_text():
        create_database(settings, database)
    return environment


def use_home(home: Path, settings: StackSettings) -> Path:
    """``prepare_home`` and export what it needs into this process (and the UI and daemon it starts)."""
    for name, value in prepare_home(home, settings).items():
        os.environ.setdefault(name, value)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
