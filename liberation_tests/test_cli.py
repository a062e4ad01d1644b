"""The CLI gives clear errors and non-zero exits for bad input."""

from __future__ import annotations

import pytest

from liberation_assets.cli import main

SPEC = """\
kafka:
  bootstrap_servers: 127.0.0.1:1
sources:
  shop:
    url: postgresql+psycopg://app:${NO_SUCH_PASSWORD:-x}@127.0.0.1:1/shop
streams: {}
"""


def test_check_reports_an_unreachable_broker(tmp_path, capsys) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    assert main(["--spec", str(path), "check"]) == 2
    err = capsys.readouterr().err
    assert "Kafka broker at 127.0.0.1:1 is unreachable" in err and "liberation stack up" in err


@pytest.mark.integration
def test_check_reports_an_unreachable_database(tmp_path, capsys, stack) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("127.0.0.1:1\n", f"{stack.kafka_bootstrap}\n", 1))
    assert main(["--spec", str(path), "check"]) == 2
    err = capsys.readouterr().err
    assert "source 'shop' at postgresql+psycopg://app:***@127.0.0.1:1/shop: cannot connect" in err


def test_check_reports_a_malformed_spec(tmp_path, capsys) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("streams: {}", "streams: {}\nstreamz: {}"))
    assert main(["--spec", str(path), "check", "--offline"]) == 2
    assert f"{path}:7: streamz: unknown field" in capsys.readouterr().err


def test_offline_check_of_the_demo_spec(capsys) -> None:
    assert main(["check", "--offline"]) == 0
    assert "spec liberation.yaml: ok" in capsys.readouterr().out
