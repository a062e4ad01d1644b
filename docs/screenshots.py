#!/usr/bin/env python
"""Screenshots of the Dagster UI for docs/operations.md, taken by a real headless Chromium.

It seeds the spec's databases, runs the main job on a fresh Dagster instance,
serves the UI with ``dg dev`` (webserver and daemon, so freshness is
evaluated), and drives Chromium over the DevTools protocol.  A page is
captured only once the text proving it rendered is on screen (asset names, a
freshness status, check results), so a slow machine gives late screenshots,
never empty ones.

    .venv/bin/python docs/screenshots.py                      # refresh docs/img/ from the demo spec
    .venv/bin/python docs/screenshots.py --spec s.yaml --out /tmp/shots --products 200

Without ``--spec`` it copies liberation.yaml onto databases, topics, slots and
replica server ids of its own (suffix ``_ui``), so it never disturbs a running
demo.  Needs Debian's ``chromium`` (``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from websockets.sync.client import ClientConnection, connect

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1600, 1000
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    f"--window-size={WIDTH},{HEIGHT}",
]
FRESHNESS_STATES = ("Passing", "Pass", "Warning", "Warn", "Failing", "Fail")
INSTANCE_YAML = "telemetry:\n  enabled: false\n"
DISMISS_DIALOGS = """[...document.querySelectorAll('button')].filter(b => ['Skip', 'Dismiss'].includes(b.innerText.trim()))
    .forEach(b => b.click()); document.querySelectorAll('[role=dialog]').length"""


@dataclass(frozen=True)
class Shot:
    name: str
    path: str
    texts: tuple[str, ...]
    """All must be on the page before it is captured."""
    any_of: tuple[str, ...] = ()
    """At least one of these must be on the page too."""
    click: str | None = None
    """A button to press once the page has rendered (for example the metadata's Plots view)."""


class Page:
    """One Chromium tab, driven over the DevTools protocol."""

    def __init__(self, socket_: ClientConnection):
        self.socket = socket_
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        result = self.call(
            "Runtime.evaluate", expression="document.body ? document.body.innerText : ''", returnByValue=True
        )
        return str(result.get("result", {}).get("value", ""))

    def wait_for(self, shot: Shot, timeout: float) -> str:
        """Poll the page's text until every expected string (and one of ``any_of``) is on it."""
        deadline = time.monotonic() + timeout
        while True:
            self.call("Runtime.evaluate", expression=DISMISS_DIALOGS)
            text = self.text()
            if all(t in text for t in shot.texts) and (not shot.any_of or any(t in text for t in shot.any_of)):
                if shot.click:
                    self.call(
                        "Runtime.evaluate",
                        expression=f"[...document.querySelectorAll('button')]"
                        f".filter(b => b.innerText.trim() === {json.dumps(shot.click)}).forEach(b => b.click())",
                    )
                time.sleep(2.5)  # let charts and the graph layout settle
                return text
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{shot.name}: {shot.texts} / any of {shot.any_of} not on {shot.path} after {timeout:.0f}s; "
                    f"page text: {text[:1500]!r}"
                )
            time.sleep(0.5)

    def screenshot(self, path: Path) -> None:
        """Capture once no dialog (Dagster's community prompt pops up late) covers the page."""
        deadline = time.monotonic() + 30
        while (
            self.call("Runtime.evaluate", expression=DISMISS_DIALOGS, returnByValue=True)["result"].get("value")
            and time.monotonic() < deadline
        ):
            time.sleep(1)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))


@contextmanager
def chromium() -> Iterator[Page]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise SystemExit("chromium is not installed: apt-get install -y chromium")
    profile = tempfile.mkdtemp(prefix="liberation-chromium-")
    process = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        port = _wait(lambda: port_file.exists() and port_file.read_text().split()[0], 60, "chromium's DevTools port")
        targets = _wait(
            lambda: [t for t in _get_json(f"http://127.0.0.1:{port}/json/list") if t["type"] == "page"],
            30,
            "a chromium tab",
        )
        with connect(targets[0]["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=30) as socket_:
            page = Page(socket_)
            page.call("Page.enable")
            page.call(
                "Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False
            )
            yield page
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def dagster_ui(env: dict[str, str], port: int) -> Iterator[str]:
    """``dg dev`` on the project; its children ignore SIGTERM, so the tree is killed by PID afterwards."""
    from liberation_assets.demo.cli import start_dg_dev, stop_tree

    log = open(Path(env["DAGSTER_HOME"]) / "dg-dev.log", "wb")
    process = start_dg_dev(port, env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: process.poll() is None and _loaded(base) or _exited(process), 240, "the Dagster UI")
        yield base
    finally:
        stop_tree(process.pid)
        process.wait()
        log.close()


def _exited(process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"dg dev exited with {process.returncode}")
    return False


def _loaded(base: str) -> bool:
    query = b'{"query": "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"}'
    try:
        request = urllib.request.Request(f"{base}/graphql", data=query, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            entries = json.loads(response.read())["data"]["workspaceOrError"]["locationEntries"]
        return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)
    except (OSError, KeyError, TypeError, ValueError):
        return False


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _wait(probe: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f}s")
        time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shots_for(spec: Any) -> list[Shot]:
    """The lineage, a stream's column schema and freshness, its checks (the contract's quarantine too), the automation, the lag plots."""
    polled = next((n for n, s in spec.streams.items() if "query" in s.patterns), None)
    fresh = polled or next(iter(spec.streams))
    leaf = "incremental" if polled else "cdc"
    first = "snapshot" if "snapshot" in spec.streams[fresh].patterns else leaf
    group = spec.streams[fresh].source
    return [
        Shot(
            "asset-graph.png",
            f"/assets/{fresh}/{fresh}_replica?view=lineage&lineageScope=upstream&lineageDepth=4",
            ("_replica", f"_{first}", "_topic", "Upstream"),
        ),  # the graph shortens long names to "produ…_replica"
        Shot(
            "catalog.png",
            f"/locations/liberation/asset-groups/{group}/list",
            (f"{fresh} / {fresh}_replica", f"{fresh} / {fresh}_{leaf}", "Materialized"),
        ),
        Shot(
            "column-schema.png",
            f"/assets/{fresh}/{fresh}_{first}",
            ("Columns", "primary key", spec.streams[fresh].key[0]),
        ),
        Shot(
            "freshness.png",
            f"/assets/{fresh}/{fresh}_{leaf}",
            ("Freshness policy", "Latest materialization"),
            FRESHNESS_STATES,
        ),
        Shot(
            "checks.png",
            f"/assets/{fresh}/{fresh}_replica?view=checks",
            ("matches_source", "quarantine", "source_rows"),
        ),
        Shot(
            "quarantine.png",
            f"/assets/{fresh}/{fresh}_replica?view=checks&checkDetail=quarantine",
            ("quarantine", "quarantine_open", "liberation quarantine"),
        ),
        Shot("automation.png", "/automation", (f"{group}_poll_sensor" if polled else "sensor",)),
        Shot(
            "lag-plots.png",
            f"/assets/{fresh}/{fresh}_replica",
            ("last_event_age_seconds", "records_applied"),
            click="Plots",
        ),
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def private_copy(spec: Any, suffix: str) -> Any:
    """The spec on databases, topics, slots and replica server ids of its own."""
    from liberation_assets.core.spec import Spec

    data = _plain(spec.model_dump(by_alias=True, exclude_none=True))
    data["automation"] = {"schedules": "stopped", "sensors": "stopped"}  # still pages: no runs start while capturing
    kafka = data["kafka"]
    kafka["topic_prefix"] = f"{kafka['topic_prefix']}_{suffix}"
    kafka["positions_topic"] = f"{kafka['positions_topic']}_{suffix}"
    for name, source in data["sources"].items():
        base, _, database = source["url"].rpartition("/")  # text, so ${VAR} references stay as they are
        name_part, mark, query = database.partition("?")
        source["url"] = f"{base}/{name_part}_{suffix}{mark}{query}"
        cdc = source.setdefault("cdc", {})
        cdc["slot"] = cdc["publication"] = f"liberation_{name}_{suffix}"
        cdc["server_id"] = 1_000_000 + zlib.crc32(f"{name}_{suffix}".encode()) % 1_000_000
    return Spec.model_validate(data)


def load_rounds(spec: Any, rounds: int, seconds: float) -> None:
    """Bursts of the demo's write load, each followed by the main job (polls, reconciliation, CDC, replicas), for the plots."""
    from liberation_assets.core.connect import create_source_engine
    from liberation_assets.demo.cli import run_main_job
    from liberation_assets.demo.generator import WriteLoad

    engines = [create_source_engine(source) for source in spec.sources.values()]
    try:
        for number in range(1, rounds + 1):
            loads = [WriteLoad(engine, threads=1, pause=0.02, long_transaction_seconds=0.5) for engine in engines]
            for load in loads:
                load.start()
            time.sleep(seconds)
            for load in loads:
                load.stop()
            time.sleep(3)  # past the MariaDB stream's safety lag, so one poll takes everything
            print(f"round {number}: main job {'succeeded' if run_main_job() else 'FAILED'}", flush=True)
    finally:
        for engine in engines:
            engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=None, help="spec to run (default: a private copy of liberation.yaml)")
    parser.add_argument("--out", default=str(REPO / "docs" / "img"))
    parser.add_argument("--products", type=int, default=1000, help="demo products to seed (0: do not seed)")
    parser.add_argument("--rounds", type=int, default=3, help="write-load bursts after the first run, for the plots")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for each page")
    args = parser.parse_args(argv)

    from liberation_assets.core.spec import load_spec

    home = Path(tempfile.mkdtemp(prefix="liberation-ui-"))
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    if args.spec:
        spec_path = Path(args.spec).resolve()
        spec = load_spec(spec_path)
    else:
        spec = private_copy(load_spec(REPO / "liberation.yaml"), "ui")
        spec_path = home / "liberation.yaml"
        spec_path.write_text(yaml.safe_dump(_plain(spec.model_dump(by_alias=True, exclude_none=True)), sort_keys=False))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LIBERATION_SPEC": str(spec_path),
        "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5",
    }
    os.environ.update(env)  # the main job below runs in this process, on the same instance
    if args.products:
        from liberation_assets.demo.cli import seed_spec_sources

        seed_spec_sources(spec, args.products)
    from liberation_assets.demo.cli import run_main_job

    print(f"running the main job on {home}", flush=True)
    if not run_main_job():
        print("the main job FAILED; the screenshots show why", flush=True)
    load_rounds(spec, args.rounds, seconds=4)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with dagster_ui(env, free_port()) as base, chromium() as page:
        for shot in shots_for(spec):
            page.goto(base + shot.path)
            text = page.wait_for(shot, args.timeout)
            page.screenshot(out / shot.name)
            found = [t for t in shot.any_of if t in text]
            print(f"{shot.name}: {base}{shot.path} shows {', '.join(shot.texts + tuple(found[:1]))}", flush=True)
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
