"""The spec: every malformed input gets a clear error naming the file, the line and the field."""

from __future__ import annotations

from datetime import timedelta

import pytest

from liberation_assets.core.errors import SpecError
from liberation_assets.core.spec import load_spec, parse_spec
from liberation_assets.core.spec_env import resolve_env

VALID = """\
kafka:
  bootstrap_servers: 127.0.0.1:19092
sources:
  shop:
    url: postgresql+psycopg://app:${SHOP_PASSWORD}@db:5432/shop
streams:
  products:
    source: shop
    table: products
    key: [id]
    projection: {id: id, title: name}
    poll_every: 30s
    freshness: {fail_after: 10m, warn_after: 2m}
"""


def _error(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, source_name="shop.yaml")
    return str(caught.value)


def test_valid_spec_parses_with_defaults() -> None:
    spec = parse_spec(VALID)
    stream = spec.streams["products"]
    assert stream.poll_every == timedelta(seconds=30)
    assert stream.freshness.warn_after == timedelta(minutes=2)
    assert stream.columns() == {"id": "id", "title": "name"}
    assert stream.patterns == ["snapshot", "query"]
    assert spec.topic_for("products") == "liberation.shop.products"


def test_unknown_field_names_file_line_and_field() -> None:
    message = _error(VALID.replace("    poll_every: 30s", "    pol_every: 30s"))
    assert "shop.yaml:12: streams.products.pol_every: unknown field" in message


def test_missing_key_names_the_field() -> None:
    message = _error(VALID.replace("    key: [id]\n", ""))
    assert "shop.yaml:7: streams.products.key: missing required field" in message


def test_bad_url_is_explained() -> None:
    message = _error(VALID.replace("postgresql+psycopg://app:${SHOP_PASSWORD}@db:5432/shop", "not a url"))
    assert "shop.yaml:5: sources.shop.url: not a SQLAlchemy URL" in message


def test_unsupported_database_is_named() -> None:
    message = _error(VALID.replace("postgresql+psycopg", "oracle"))
    assert "unsupported database 'oracle'" in message


def test_literal_password_is_refused() -> None:
    message = _error(VALID.replace("${SHOP_PASSWORD}", "hunter2"))
    assert "environment variable" in message and "hunter2" not in message


def test_unknown_source_reference_points_at_the_stream() -> None:
    message = _error(VALID.replace("    source: shop\n", "    source: shoop\n"))
    assert "streams.products.source: unknown source 'shoop'" in message
    assert "shop.yaml:8:" in message


def test_bad_duration_and_bad_yaml() -> None:
    assert "expected a duration" in _error(VALID.replace("30s", "soon"))
    assert "not valid YAML" in _error("sources: [unclosed")


def test_query_pattern_needs_a_cursor() -> None:
    message = _error(VALID.replace("    key: [id]\n", "    key: [id]\n    cursor: null\n"))
    assert "needs a cursor column" in message


def test_secrets_resolve_only_on_use_and_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = parse_spec(VALID)
    source = spec.sources["shop"]
    assert "SHOP_PASSWORD" not in source.safe_url() and "***" in source.safe_url()
    monkeypatch.delenv("SHOP_PASSWORD", raising=False)
    with pytest.raises(SpecError, match="SHOP_PASSWORD is not set"):
        source.resolved_url()
    monkeypatch.setenv("SHOP_PASSWORD", "s3cret")
    assert source.resolved_url().password == "s3cret"
    assert "s3cret" not in source.safe_url()


def test_env_defaults() -> None:
    assert resolve_env("${NOPE_NOT_SET:-fallback}/x", environ={}) == "fallback/x"


def test_missing_file_is_clear(tmp_path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "absent.yaml")


def test_demo_spec_is_valid() -> None:
    spec = load_spec("liberation.yaml")
    assert spec.streams


def test_log_based_streams_need_no_cursor() -> None:
    spec = parse_spec(VALID.replace("    key: [id]\n", "    key: [id]\n    patterns: [cdc]\n"))
    assert spec.streams["products"].cursor is None
    assert parse_spec(VALID).streams["products"].cursor == "updated_at"


MODE_SPEC = """
sources:
  db: {url: "postgresql+psycopg://u:${PW}@h/db"MODE}
streams:
  a: {source: db, table: a, key: [id], cursor: null, patterns: [PATTERN]}
outboxes:
  box: {source: db, mode: continuous}
"""


def test_a_source_or_outbox_reads_in_micro_batches_unless_the_spec_says_continuous() -> None:
    default = parse_spec(MODE_SPEC.replace("MODE", "").replace("PATTERN", "cdc"))
    assert default.sources["db"].mode == "micro_batch" and default.outboxes["box"].mode == "continuous"
    assert default.continuous_sources() == ["box"]
    both = parse_spec(MODE_SPEC.replace("MODE", ", mode: continuous").replace("PATTERN", "cdc"))
    assert both.continuous_sources() == ["db", "box"]


def test_the_mode_is_validated() -> None:
    with pytest.raises(SpecError, match="mode"):
        parse_spec(MODE_SPEC.replace("MODE", ", mode: streaming").replace("PATTERN", "cdc"))
    with pytest.raises(SpecError, match="continuous needs a stream with the cdc pattern"):
        parse_spec(
            MODE_SPEC.replace("MODE", ", mode: continuous")
            .replace("PATTERN", "query")
            .replace("cursor: null", "cursor: updated_at")
        )
