"""Spec input an operator (or an attacker) may give: each refused with one line, or handled exactly."""

from __future__ import annotations

import pytest

from liberation_assets.core import spec_yaml
from liberation_assets.core.errors import SpecError
from liberation_assets.core.spec import KafkaSpec, load_spec, parse_spec
from liberation_assets.core.spec_env import resolve_env, resolve_url

HEAD = "sources:\n  shop:\n    url: postgresql+psycopg://app:${SHOP_PW:-x}@127.0.0.1:${SHOP_PORT:-5432}/shop\n"


def _one_line_error(path) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_directory_is_refused_in_one_line(tmp_path) -> None:
    assert "is a directory" in _one_line_error(tmp_path)


def test_a_non_utf8_file_is_refused_naming_its_line(tmp_path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(HEAD.encode() + b"streams: {}\n# caf\xe9\n")
    message = _one_line_error(path)
    assert f"{path}:5: not UTF-8" in message


def test_an_alias_bomb_is_refused_quickly(tmp_path) -> None:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = tmp_path / "spec.yaml"
    path.write_text("\n".join(lines) + "\n" + HEAD)
    assert "YAML aliases expand past" in _one_line_error(path)


def test_a_recursive_alias_is_refused(tmp_path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("loop: &a [*a]\n" + HEAD)
    assert "cycle" in _one_line_error(path)


def test_a_few_aliases_still_work() -> None:
    spec = parse_spec(HEAD + "streams:\n  a: &s {source: shop, table: a, key: [id]}\n  b: {<<: *s, table: b}\n")
    assert spec.streams["b"].table == "b" and spec.streams["b"].key == ["id"]


def test_an_oversized_file_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(spec_yaml, "MAX_SPEC_BYTES", 100)
    path = tmp_path / "spec.yaml"
    path.write_text(HEAD + "streams: {}\n" + "#" * 200 + "\n")
    assert "larger than the 100 bytes" in _one_line_error(path)


def test_duplicate_stream_names_are_refused_naming_both_lines() -> None:
    text = HEAD + "streams:\n  a: {source: shop, table: a, key: [id]}\n  a: {source: shop, table: b, key: [id]}\n"
    with pytest.raises(SpecError, match=r":6: .*duplicate key 'a' \(first at line 5, again at line 6\)"):
        parse_spec(text)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://u:LITERAL@${HOST:-127.0.0.1}:45432/db",
        "postgresql+psycopg://u:LITERAL${X:-}@127.0.0.1:45432/db",
        "postgresql+psycopg://u:${PW}@127.0.0.1/db?password=LITERAL",
        "postgresql+psycopg://u@127.0.0.1/db?sslmode=require&PASSWORD=LITERAL",
        "mysql+pymysql://u:LITERAL@${HOST}/db",
    ],
)
def test_a_literal_password_is_refused_wherever_it_sits(url: str) -> None:
    with pytest.raises(SpecError, match="written literally") as caught:
        parse_spec(f"sources:\n  shop:\n    url: '{url}'\n")
    assert "LITERAL" not in str(caught.value)


def test_environment_values_are_url_escaped_where_they_land() -> None:
    environ = {"PW": "p@ss:w/rd%20?#&=", "DB": "a/b"}
    url = resolve_url("postgresql+psycopg://u:${PW}@127.0.0.1:5432/${DB}?sslpassword=${PW}", environ=environ)
    assert url.password == environ["PW"] and url.port == 5432 and url.host == "127.0.0.1"
    assert url.database == "a/b" and url.query["sslpassword"] == environ["PW"]


def test_nested_defaults_resolve_innermost_last() -> None:
    text = "${A:-h:${B:-19092}}"
    assert resolve_env(text, environ={}) == "h:19092"
    assert resolve_env(text, environ={"B": "5"}) == "h:5"
    assert resolve_env(text, environ={"A": "x", "B": "5"}) == "x"


def test_the_kafka_port_alone_moves_the_default_bootstrap(monkeypatch) -> None:
    monkeypatch.delenv("LIBERATION_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("LIBERATION_KAFKA_PORT", "41234")
    assert KafkaSpec().resolved_bootstrap_servers() == "127.0.0.1:41234"
    assert load_spec("liberation.yaml").kafka.resolved_bootstrap_servers() == "127.0.0.1:41234"
    monkeypatch.setenv("LIBERATION_KAFKA_BOOTSTRAP", "10.0.0.1:9092")
    assert KafkaSpec().resolved_bootstrap_servers() == "10.0.0.1:9092"


def test_the_printed_address_is_the_resolved_one_without_secrets(monkeypatch) -> None:
    monkeypatch.setenv("SHOP_PORT", "55432")
    monkeypatch.setenv("SHOP_PW", "hunter2")
    source = parse_spec(HEAD).sources["shop"]
    assert source.safe_url() == "postgresql+psycopg://app:***@127.0.0.1:55432/shop"
    unset = parse_spec(
        "sources:\n  shop:\n    url: postgresql+psycopg://app:${SHOP_PW}@127.0.0.1:${NO_SUCH_PORT_VAR}/shop\n"
    )
    shown = unset.sources["shop"].safe_url()
    assert shown == "postgresql+psycopg://app:***@127.0.0.1:${NO_SUCH_PORT_VAR}/shop" and ":0" not in shown
    query = parse_spec("sources:\n  s:\n    url: postgresql+psycopg://app@h/d?password=${SHOP_PW}\n").sources["s"]
    assert "hunter2" not in query.safe_url() and "password=***" in query.safe_url()


def test_sixty_thousand_streams_load(tmp_path) -> None:
    """The figure in the README (about 5 s on a quiet machine) comes from this file; no time is asserted here."""
    path = tmp_path / "big.yaml"
    body = "".join(
        f"  s{i}:\n    source: shop\n    table: t{i}\n    key: [id]\n    projection: [id, name, updated_at]\n"
        for i in range(60_000)
    )
    path.write_text(HEAD + "streams:\n" + body)
    assert len(load_spec(path).streams) == 60_000
