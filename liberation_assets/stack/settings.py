"""Where the local stack lives and how to reach it.

Kept apart from the services so every module (and callers) can share one
frozen value without import cycles.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from liberation_assets.core.paths import repo_root, stack_dir

__all__ = ["StackSettings", "default_settings", "repo_root"]


@dataclass(frozen=True)
class StackSettings:
    """Data folder plus the 127.0.0.1 endpoints and demo credentials of the stack."""

    root: Path
    kafka_bootstrap: str = "127.0.0.1:19092"
    pg_host: str = "127.0.0.1"
    pg_port: int = 15432
    pg_user: str = "liberation"
    pg_password: str = "liberation"
    mysql_host: str = "127.0.0.1"
    mysql_port: int = 13306
    mysql_user: str = "liberation"
    mysql_password: str = "liberation"

    def pg_url(self, database: str) -> str:
        """SQLAlchemy URL for a PostgreSQL database of the stack (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.pg_user}:{self.pg_password}@{self.pg_host}:{self.pg_port}/{database}"

    def mysql_url(self, database: str) -> str:
        """SQLAlchemy URL for a MariaDB database of the stack (PyMySQL driver)."""
        return f"mysql+pymysql://{self.mysql_user}:{self.mysql_password}@{self.mysql_host}:{self.mysql_port}/{database}"

    def safe_pg_url(self, database: str) -> str:
        """The PostgreSQL URL as printed: never with the password."""
        return self.pg_url(database).replace(f":{self.pg_password}@", ":***@", 1)

    def safe_mysql_url(self, database: str) -> str:
        """The MariaDB URL as printed: never with the password."""
        return self.mysql_url(database).replace(f":{self.mysql_password}@", ":***@", 1)

    @property
    def kafka_host(self) -> str:
        return self.kafka_bootstrap.rsplit(":", 1)[0]

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.rsplit(":", 1)[1])


def default_settings() -> StackSettings:
    """Settings from the environment, read when called (not at import time).

    LIBERATION_STACK_DIR (default <repo>/.stack), LIBERATION_KAFKA_PORT,
    LIBERATION_PG_PORT, LIBERATION_MYSQL_PORT.
    """
    env = os.environ
    root = stack_dir()
    return StackSettings(
        root=root,
        kafka_bootstrap=f"127.0.0.1:{int(env.get('LIBERATION_KAFKA_PORT') or 19092)}",
        pg_port=int(env.get("LIBERATION_PG_PORT") or 15432),
        mysql_port=int(env.get("LIBERATION_MYSQL_PORT") or 13306),
    )
