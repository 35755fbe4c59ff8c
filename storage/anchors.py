"""Ledger anchors: the ledger head written to WORM storage, and checks against them.

The chain (:mod:`storage.chain`) shows that no stored entry was edited, but not
that entries are missing at the end or that the whole file was replaced. An anchor
is the head ``(seq, hash)`` at some moment, written to the payload store under
Object Lock ``COMPLIANCE`` where nobody (the appliance included) can delete it
before its retention ends::

    anchors/<node>/<seq:012d>-<hash>.json
    {"format": "callvault-ledger-anchor-v1", "hash": "...", "node": "...",
     "seq": 4213, "time": "2025-01-31T12:00:00.123Z"}

The key itself carries ``seq`` and ``hash``: a version of a key cannot be deleted
while it is retained, so the key is the record a verifier relies on; the body adds
when and by which node, and must agree with the key. Every anchor ever written must
still match the ledger: entry ``seq`` exists and has that ``hash``. A deleted tail,
a chain rebuilt from scratch and an older copy of the database each fail that.
See docs/ledger.md.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .blobstore import BlobStore, Retention
from .chain import format_ts
from .durations import NODE_RE, SECONDS, duration_seconds, parse_duration
from .errors import IntegrityError, NotFound

__all__ = ["FORMAT", "PREFIX", "Anchor", "anchor_until", "anchors_in", "duration_seconds", "load_dir",
           "parse_duration", "read_anchor", "save_anchor", "validate_node", "write_anchor"]

FORMAT = "callvault-ledger-anchor-v1"
PREFIX = "anchors/"
_NAME_RE = re.compile(r"(\d{12})-([0-9a-f]{64})\.json\Z")


def anchor_until(now: datetime.datetime, text: str) -> datetime.datetime:
    """``now`` plus the duration ``text``; years are calendar years."""
    n, unit = parse_duration(text)
    if unit != "y":
        return now + datetime.timedelta(seconds=n * SECONDS[unit])
    try:
        return now.replace(year=now.year + n)
    except ValueError:  # 29 February into a common year
        return now.replace(year=now.year + n, day=28) + datetime.timedelta(days=1)


@dataclass(frozen=True, order=True)
class Anchor:
    seq: int
    hash: str
    node: str
    time: str = ""  # when it was written (UTC, as an entry's ts); "" when known from the key only

    @property
    def key(self) -> str:
        return f"{PREFIX}{self.node}/{self.seq:012d}-{self.hash}.json"

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[1]

    def to_bytes(self) -> bytes:
        body = {"format": FORMAT, "seq": self.seq, "hash": self.hash, "node": self.node, "time": self.time}
        return (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_key(cls, key: str) -> Anchor | None:
        """The anchor a key names, or None when it is not an anchor key."""
        parts = key.split("/")
        if len(parts) != 3 or parts[0] + "/" != PREFIX or not NODE_RE.match(parts[1]):
            return None
        m = _NAME_RE.match(parts[2])
        if not m or int(m.group(1)) < 1:
            return None
        return cls(int(m.group(1)), m.group(2), parts[1])

    @classmethod
    def from_bytes(cls, data: bytes, where: str, node: str | None = None) -> Anchor:
        """Parse an anchor body; ``where`` (its key or file) names it in errors and must
        carry the same seq and hash (and node, when given)."""
        try:
            body = json.loads(data)
            anchor = cls(body["seq"], body["hash"], body["node"], body["time"])
            ok = body["format"] == FORMAT and type(anchor.seq) is int and isinstance(anchor.time, str)
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise IntegrityError(f"anchor {where}: not a {FORMAT} object")
        m = _NAME_RE.search(where)
        if not m or (int(m.group(1)), m.group(2)) != (anchor.seq, anchor.hash) \
                or (node is not None and anchor.node != node):
            raise IntegrityError(f"anchor {where}: its body (seq {anchor.seq}, hash {anchor.hash[:16]}…, "
                                 f"node {anchor.node}) does not match its name")
        return anchor


def validate_node(node: str) -> str:
    if not isinstance(node, str) or not NODE_RE.match(node):
        raise ValueError(f"anchor node {node!r}: expected 1-63 letters, digits, '_', '.', '-'")
    return node


def write_anchor(store: BlobStore, seq: int, hash_: str, node: str, retention: str,
                 now: datetime.datetime | None = None) -> Anchor:
    """Write the head ``(seq, hash_)`` as an anchor retained (COMPLIANCE) for ``retention``
    (e.g. ``"7y"``). An anchor already written for this head is kept as it is."""
    now = now or datetime.datetime.now(datetime.UTC)
    anchor = Anchor(seq, hash_, validate_node(node), format_ts(now))
    try:
        store.head(anchor.key, tags=False)
        return anchor
    except NotFound:
        pass
    data = anchor.to_bytes()
    store.put(anchor.key, data, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
              retention=Retention("COMPLIANCE", anchor_until(now, retention)), tags={"kind": "ledger-anchor"})
    return anchor


def anchors_in(store: BlobStore, node: str) -> list[Anchor]:
    """Every anchor of ``node``, from the keys alone (one listing), oldest first."""
    found = (Anchor.from_key(k) for k in store.list(f"{PREFIX}{validate_node(node)}/"))
    return sorted(a for a in found if a is not None)


def read_anchor(store: BlobStore, anchor: Anchor) -> Anchor:
    """The anchor with its body read and checked against its key."""
    return Anchor.from_bytes(store.get(anchor.key), anchor.key, anchor.node)


def save_anchor(store: BlobStore, anchor: Anchor, directory: Path) -> Path:
    """Copy one anchor's object to ``directory/<node>/<name>`` (as stored, byte for byte)."""
    data = store.get(anchor.key)
    Anchor.from_bytes(data, anchor.key, anchor.node)
    target = directory / anchor.node / anchor.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def load_dir(directory: Path) -> list[Anchor]:
    """Anchors saved by :func:`save_anchor` (every ``*.json`` below ``directory``), each
    checked against its file name. ``IntegrityError`` on a file that is not one."""
    files: Iterable[Path] = sorted(p for p in Path(directory).rglob("*.json") if p.is_file())
    return sorted(Anchor.from_bytes(p.read_bytes(), str(p)) for p in files)
