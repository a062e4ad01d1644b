"""Log sequence numbers: PostgreSQL writes them as ``XXXXXXXX/XXXXXXXX``; positions keep integers."""

from __future__ import annotations


def lsn_to_int(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def lsn_to_str(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
