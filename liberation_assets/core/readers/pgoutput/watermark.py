"""DBLog watermarks: snapshot a table chunk by chunk while the log keeps streaming.

1. write a low watermark into the log, 2. select one key-ordered chunk,
3. write a high watermark.  While the log between the two watermarks streams
by, every buffered row whose key changes there is dropped (the log event is
newer); at the high watermark the rows left are emitted.  No locks, and the
chunk lands in the stream exactly where its data was read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from liberation_assets.core.events import ChangeEvent

WATERMARK_PREFIX = "liberation.watermark"
LOW, HIGH = "low", "high"


def watermark_content(chunk_id: str, mark: str) -> str:
    return f"{chunk_id}:{mark}"


def parse_watermark(content: bytes) -> tuple[str, str]:
    chunk_id, _, mark = content.decode().partition(":")
    return chunk_id, mark


@dataclass
class ChunkWindow:
    """One chunk in flight: buffered rows, keyed by their serialized key."""

    stream: str
    chunk_id: str
    rows: dict[bytes, ChangeEvent]
    last_key: list[Any] | None
    """Codec-encoded key of the chunk's last row: where the next chunk starts."""
    is_last: bool
    opened: bool = False
    dropped: int = field(default=0)

    def on_marker(self, chunk_id: str, mark: str) -> bool:
        """Open at our low watermark; True at our high watermark, when the rows left are due."""
        if chunk_id != self.chunk_id:
            return False  # a watermark of a chunk that a crashed run left behind
        if mark == LOW:
            self.opened = True
            return False
        return mark == HIGH

    def on_change(self, key: bytes) -> None:
        if self.opened and self.rows.pop(key, None) is not None:
            self.dropped += 1

    def on_truncate(self) -> None:
        if self.opened:
            self.dropped += len(self.rows)
            self.rows.clear()
