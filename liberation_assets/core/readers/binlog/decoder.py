"""The pure heart of binlog capture: log items in, change events per stream and positions out.

It tracks the last transaction boundary (where a restart reads from), the GTID
and the rows events already published inside the current transaction.  When a
reader resumes inside a transaction, the rows events up to the stored ``event``
are skipped, so nothing is published twice; everything after is published, so
nothing is lost.  DDL makes the stream mappers re-plan the next rows they see,
so an added column appears in the following events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from liberation_assets.core.events import ChangeEvent
from liberation_assets.core.readers.binlog.log import Begin, Commit, Heartbeat, LogItem, Rotate, Rows, Statement
from liberation_assets.core.readers.binlog.mapping import StreamMapper
from liberation_assets.core.readers.binlog.position import BinlogPosition, coordinates_key

Routes = dict[tuple[str, str], list[StreamMapper]]
"""(schema, table) → the mappers of the streams liberating that table."""

_LEADING_COMMENTS = re.compile(r"^\s*(?:/\*.*?\*/\s*|#[^\n]*\n\s*|--[^\n]*\n\s*)*", re.S)
_IN_TRANSACTION = ("BEGIN", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO", "XA ")
_ENDS_TRANSACTION = ("COMMIT", "ROLLBACK")
_NAME = r"(`(?:``|[^`])+`|[^`\s.;]+)"
_TRUNCATE = re.compile(rf"^TRUNCATE\s+(?:TABLE\s+)?(?:{_NAME}\s*\.\s*)?{_NAME}", re.I)


def _unquote(name: str | None) -> str | None:
    """An identifier as the server spells it: backticks off, a doubled backtick one."""
    if name is not None and name.startswith("`"):
        return name[1:-1].replace("``", "`")
    return name


@dataclass
class DecoderStats:
    """What the decoder saw, for metadata."""

    skipped_as_published: int = 0
    ddl: int = 0
    truncated: list[str] = field(default_factory=list)
    """Streams whose table was truncated: TRUNCATE is not row-logged, so they must be snapshotted again."""


class BinlogDecoder:
    """Feeds log items through the stream mappers; ``position()`` always covers what was fed."""

    def __init__(self, start: BinlogPosition, routes: Routes):
        self.routes = routes
        self.start = start
        self.file, self.boundary, self.event = start.file, start.pos, 0
        self.gtid, self.server_id, self.ts_ms = start.gtid, start.server_id, start.ts_ms
        self.in_transaction = False
        self._skip_through = start.event
        self.stats = DecoderStats()

    def position(self) -> BinlogPosition:
        return replace(
            self.start,
            file=self.file,
            pos=self.boundary,
            event=self.event,
            gtid=self.gtid,
            server_id=self.server_id,
            ts_ms=self.ts_ms,
        )

    def feed(self, item: LogItem, pending: dict[str, list[ChangeEvent]]) -> int:
        """Apply one item; append its events to ``pending`` by stream; return how many were added."""
        if isinstance(item, Rows):
            return self._rows(item, pending)
        if isinstance(item, Commit):
            self._end_unit(item.end_pos)
        elif isinstance(item, Begin):
            self.in_transaction = True
            self.gtid = item.gtid or self.gtid
            self.server_id = item.server_id
        elif isinstance(item, Statement):
            self._statement(item)
        elif isinstance(item, Rotate) and item.file != self.file:
            # The log goes on in the next file; a rotate naming the same file only restates where a
            # (re)connected dump starts, possibly inside the current transaction.
            self.file, self.boundary, self.event = item.file, item.pos, 0
            self._skip_through = 0
            self.in_transaction = False
        elif (
            isinstance(item, Heartbeat)
            and not self.in_transaction
            and coordinates_key(item.file, item.pos) > coordinates_key(self.file, self.boundary)
        ):
            # Idle: everything up to here was sent, and the events we skip (checkpoints, other tables'
            # housekeeping) ended no transaction of ours.  Without this, a drain would wait forever for
            # a target just past such events.
            self.file, self.boundary, self.event = item.file, item.pos, 0
            self._skip_through = 0
        return 0

    def _concerns_us(self, schema: str, text: str) -> bool:
        """Whether a statement may change one of our tables (erring towards yes): it runs in one of our
        schemas or names one of our tables."""
        lowered = text.lower()
        return any(
            schema == ours or table.lower() in lowered or table.replace("`", "``").lower() in lowered
            for ours, table in self.routes
        )

    def _end_unit(self, end_pos: int) -> None:
        self.boundary, self.event, self._skip_through = end_pos, 0, 0
        self.in_transaction = False

    def _rows(self, item: Rows, pending: dict[str, list[ChangeEvent]]) -> int:
        self.event = item.end_pos
        if self._skip_through and item.end_pos <= self._skip_through:
            self.stats.skipped_as_published += 1
            return 0
        mappers = self.routes.get((item.table.schema, item.table.table))
        if not mappers:
            return 0
        ts_ms = item.timestamp * 1000
        self.ts_ms = ts_ms
        source = {
            "file": self.file,
            "pos": self.boundary,
            "event": item.end_pos,
            "gtid": self.gtid,
            "server_id": item.server_id,
            "snapshot": "false",
        }
        added = 0
        for mapper in mappers:
            events = mapper.events(item.op, item.table, item.rows, ts_ms, source, item.positional)
            if events:
                pending.setdefault(mapper.shape.name, []).extend(events)
                added += len(events)
        return added

    def _statement(self, item: Statement) -> None:
        text = _LEADING_COMMENTS.sub("", item.query, count=1)
        head = text[:20].upper()
        if head.startswith(_IN_TRANSACTION):
            if head.startswith("BEGIN"):
                self.in_transaction = True
            return
        if head.startswith(_ENDS_TRANSACTION):
            self._end_unit(item.end_pos)
            return
        # DDL and other statements logged as text: an implicit commit, and possibly a new table layout.
        self._end_unit(item.end_pos)
        if not self._concerns_us(item.schema, text):
            return
        self.stats.ddl += 1
        for mappers in self.routes.values():
            for mapper in mappers:
                mapper.forget_layouts()
        if (truncate := _TRUNCATE.match(text)) is not None:
            key = (_unquote(truncate.group(1)) or item.schema, str(_unquote(truncate.group(2))))
            self.stats.truncated.extend(m.shape.name for m in self.routes.get(key, []))
