"""A real local stack (Kafka, PostgreSQL, MariaDB) run as plain processes.

No Docker is needed: each service runs from system binaries (or Maven-resolved
jars for Kafka) with all data under one folder, on 127.0.0.1 and non-default
ports, so it can coexist with system services. Deliberately free of Dagster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import kafka, mariadb, postgres
from .process import Log, StackError, locked
from .settings import StackSettings, default_settings

__all__ = ["StackError", "StackSettings", "default_settings", "down", "ensure_stack", "status", "up"]

_SERVICES = {"kafka": kafka, "postgres": postgres, "mariadb": mariadb}


def _each(action: Callable[[Any], object]) -> dict[str, object]:
    """Run an action per service concurrently; raise one error naming every failure."""
    with ThreadPoolExecutor(len(_SERVICES)) as pool:
        futures = {name: pool.submit(action, module) for name, module in _SERVICES.items()}
    results: dict[str, object] = {}
    errors: list[str] = []
    for name, future in futures.items():
        try:
            results[name] = future.result()
        except Exception as exc:  # noqa: BLE001 - reported together below
            errors.append(f"[{name}] {exc}")
    if errors:
        raise StackError("\n".join(errors))
    return results


def up(settings: StackSettings, *, log: Log = print) -> None:
    """Start whatever is not already up and healthy; safe to call repeatedly."""
    started = time.monotonic()
    with locked(settings.root):
        _each(lambda m: m.up(settings, log))
    log(
        f"stack up in {time.monotonic() - started:.1f}s: kafka={settings.kafka_bootstrap} "
        f"postgres={settings.safe_pg_url(settings.pg_user)} mysql={settings.safe_mysql_url(settings.mysql_user)} "
        f"data={settings.root}"
    )


def down(settings: StackSettings) -> None:
    """Stop all three services; data stays under settings.root."""
    with locked(settings.root):
        _each(lambda m: m.down(settings))


def status(settings: StackSettings) -> dict[str, bool]:
    """Per service: our process runs and answers with the stack credentials."""
    return {name: bool(m.running(settings) and m.healthy(settings)) for name, m in _SERVICES.items()}


def ensure_stack(settings: StackSettings | None = None, *, log: Log = print) -> StackSettings:
    """Bring the stack up (default settings unless given) and return its settings; for test fixtures."""
    settings = settings or default_settings()
    up(settings, log=log)
    return settings
