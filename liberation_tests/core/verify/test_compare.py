"""The bounded-memory comparison: counts, per-row hashes, and differing keys named (no database needed)."""

from __future__ import annotations

import orjson

from liberation_assets.core.verify.compare import compare, compare_hashed, row_hash


def _side(rows: dict[int, dict]) -> list[tuple[bytes, str]]:
    return [(orjson.dumps({"id": k}), row_hash(v)) for k, v in rows.items()]


def test_equal_sides_match_and_report_counts() -> None:
    rows = {i: {"id": i, "name": f"n{i}"} for i in range(1000)}
    result = compare_hashed(lambda: _side(rows), lambda: _side(dict(rows)))
    assert result.matches
    assert (result.source_rows, result.replica_rows, result.differing_buckets) == (1000, 1000, 0)
    assert result.describe() == "replica matches source: 1000 rows"


def test_missing_extra_and_different_keys_are_named() -> None:
    source = {i: {"id": i, "name": f"n{i}"} for i in range(1000)}
    replica = dict(source)
    del replica[17]
    replica[5000] = {"id": 5000, "name": "ghost"}
    replica[42] = {"id": 42, "name": "corrupted"}
    result = compare_hashed(lambda: _side(source), lambda: _side(replica))
    assert not result.matches
    assert result.missing == [b'{"id":17}'] and result.extra == [b'{"id":5000}'] and result.different == [b'{"id":42}']
    assert not result.partial
    text = result.describe()
    assert '{"id":17}' in text and '{"id":5000}' in text and '{"id":42}' in text


def test_key_order_of_the_row_does_not_matter_but_values_do() -> None:
    a = {1: {"id": 1, "price": "1.50", "tags": {"b": 1, "a": 2}}}
    b = {1: {"tags": {"a": 2, "b": 1}, "price": "1.50", "id": 1}}
    assert compare_hashed(lambda: _side(a), lambda: _side(b)).matches
    c = {1: {"id": 1, "price": "1.5", "tags": {"b": 1, "a": 2}}}
    assert compare_hashed(lambda: _side(a), lambda: _side(c)).different == [b'{"id":1}']


def test_an_empty_replica_examines_only_a_few_buckets() -> None:
    source = {i: {"id": i} for i in range(20_000)}
    result = compare_hashed(lambda: _side(source), lambda: [], max_buckets=4)
    assert not result.matches and result.partial
    assert result.replica_rows == 0 and result.source_rows == 20_000
    assert result.examined_buckets == 4 and 0 < len(result.missing) < 200
    assert "keys listed from 4 of" in result.describe()


def test_in_memory_compare_agrees() -> None:
    source = {b"a": {"x": 1}, b"b": {"x": 2}}
    replica = {b"a": {"x": 1}, b"b": {"x": 3}, b"c": {"x": 4}}
    result = compare(source, replica)
    assert result.different == [b"b"] and result.extra == [b"c"] and not result.missing
