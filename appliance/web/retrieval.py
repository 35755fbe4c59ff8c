"""Playback and download of archived recordings, decrypted on this node, audited first.

Flow: the browser asks for access with a reason (``POST /api/recordings/{id}/access``);
that writes an ``audit.play`` or ``audit.download`` entry to the ledger, and the entry
*is* the grant: the audio and download routes serve only while the same user, in the
same session, holds an unexpired entry for the recording. The file key is unwrapped
only after that entry is committed.

Playback is ``audio/wav`` (the recording is a WAV file) with HTTP Range. A range is
served window by window: the STREAM chunks that hold it are fetched with a ranged GET
(the first window small, for a quick first byte after a seek), decrypted and written;
nothing before the range and nothing after what the browser reads is fetched or
decrypted. The unwrapped recording (file key, payload nonce) is kept in memory for
the grant's lifetime so that the many range requests of one listening session do not
each fetch the header.

The private identity lives only on the retrieval node: ``[web] identity_file``. A node
without it refuses playback and WAV download, saying so; the original age file can
still be downloaded (it needs no key). A pbx node (``[node] role = "pbx"``) refuses
every playback and download.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archiver.archive import Archive, ManifestMismatch, Opened, Shredded
from archiver.manifest import Manifest
from storage.age import CHUNK_SIZE, Identity, NoMatchingIdentity
from storage.catalog import Catalog, Recording
from storage.chain import Entry
from storage.errors import NotFound, StorageError
from storage.keys import load_identities
from storage.ledger import Ledger
from storage.users import Session

log = logging.getLogger(__name__)

PLAY_TTL = 4 * 3600.0
DOWNLOAD_TTL = 300.0
FIRST_WINDOW = 2  # chunks (128 KiB): the first bytes after a seek come back fast
WINDOW = 16  # chunks (1 MiB): the most one ranged GET asks for, reached by doubling
CACHE_SIZE = 32


class Refused(Exception):
    """Access that cannot be given, with a message for the person asking."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Grant:
    """A recording opened for one grant, until the grant expires."""

    opened: Opened
    expires_at: float


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``Range: bytes=a-b`` -> (a, b) inclusive, or None for the whole body.

    Raises ValueError for a range that cannot be satisfied (416). Several ranges
    (``a-b,c-d``) are answered with the first one only, as browsers never ask for more."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec:
        return None  # unknown unit: ignore the header (RFC 9110)
    first = spec.split(",")[0].strip()
    start_s, dash, end_s = first.partition("-")
    if not dash or not (start_s.isdigit() or end_s.isdigit()) or (start_s and not start_s.isdigit()) \
            or (end_s and not end_s.isdigit()):
        return None
    if not start_s:  # suffix: the last N bytes
        n = int(end_s)
        if n == 0 or size == 0:
            raise ValueError("empty suffix range")
        return max(0, size - n), size - 1
    start = int(start_s)
    end = min(int(end_s), size - 1) if end_s else size - 1
    if start >= size or end < start:
        raise ValueError("range not satisfiable")
    return start, end


class Retrieval:
    def __init__(self, config: Any, catalog: Catalog, ledger: Ledger, archive: Archive):
        self.config, self.catalog, self.ledger, self.archive = config, catalog, ledger, archive
        self.identities: list[Identity] | None = None
        self.refusal = ""
        self._opened: OrderedDict[tuple[str, int], Grant] = OrderedDict()

    # -- set-up ---------------------------------------------------------------------------
    async def start(self) -> None:
        web = self.config.web
        path = web.identity_file
        if self.config.node.role == "pbx":
            self.refusal = ("Playback and download are refused on this node: it is a pbx node ([node] role = "
                            "\"pbx\"), which by design holds no private key and serves no recordings. Play or "
                            "download them on the retrieval node.")
            return
        if not path:
            self.refusal = ("Playback is not available on this node: it holds no private key ([web] identity_file "
                            "is not set). Recordings are decrypted only on the retrieval node; play them there.")
            return
        secret = web.identity_passphrase
        try:
            self.identities = await asyncio.to_thread(load_identities, Path(path),
                                                      secret.reveal() if secret else None)
        except (StorageError, OSError, ValueError) as e:
            self.refusal = f"Playback is not available: the retrieval identity [web] identity_file = {path} " \
                           f"cannot be used ({e})."
            log.error("%s", self.refusal)
            return
        log.info("retrieval identities loaded: %s", ", ".join(i.fingerprint for i in self.identities))

    @property
    def fingerprints(self) -> list[str]:
        return [i.fingerprint for i in self.identities or []]

    def close(self) -> None:
        self._opened.clear()

    # -- grants ---------------------------------------------------------------------------
    async def archived(self, recording_id: str) -> Recording:
        try:
            rec = await asyncio.to_thread(self.catalog.get, recording_id)
        except NotFound:
            raise Refused(404, "no such recording") from None
        if rec.state != "archived" or not rec.manifest:
            raise Refused(409, f"recording is {rec.state}, not archived: nothing to play yet"
                          if rec.state != "erased" else "recording was erased")
        return rec

    async def grant(self, session: Session, recording_id: str, purpose: str, fmt: str, reason: str,
                    client: str) -> Entry:
        """Write the audit entry that allows this session to play or download the recording."""
        if self.config.node.role == "pbx":
            raise Refused(409, self.refusal)
        rec = await self.archived(recording_id)
        uses_key = purpose == "play" or fmt == "wav"
        if uses_key and self.identities is None:
            raise Refused(409, self.refusal)
        ttl = PLAY_TTL if purpose == "play" else DOWNLOAD_TTL
        body = {"recording_id": rec.recording_id, "actor": session.user.name, "role": session.user.role,
                "via": "web", "purpose": purpose, "format": fmt, "reason": reason, "session": session.id[:16],
                "client": client, "expires_at": round(time.time() + ttl, 3),
                "identities": self.fingerprints if uses_key else []}
        kind = "audit.play" if purpose == "play" else "audit.download"
        return await self.ledger.append_async(kind, body, call_id=rec.linkedid or None, recording_id=rec.recording_id)

    async def held_grant(self, session: Session, recording_id: str, purpose: str, fmt: str) -> Entry | None:
        kind = "audit.play" if purpose == "play" else "audit.download"
        entries = await asyncio.to_thread(self.ledger.find, recording_id=recording_id, kind=kind)
        now = time.time()
        for e in reversed(entries):
            d = e.data
            if (d.get("actor") == session.user.name and d.get("session") == session.id[:16]
                    and d.get("format") == fmt and float(d.get("expires_at", 0)) > now):
                return e
        return None

    # -- reading ----------------------------------------------------------------------------
    def _open(self, rec: Recording) -> Opened:
        try:
            return self.archive.open(rec, self.identities or [])
        except Shredded:
            raise Refused(410, "the recording's key was destroyed (crypto-shredded); it cannot be played") from None
        except ManifestMismatch:
            raise Refused(500, "the stored header does not match the catalog's manifest") from None
        except NoMatchingIdentity:
            m = Manifest.from_json(rec.manifest)
            raise Refused(409, f"this node's key ({', '.join(self.fingerprints)}) is not a recipient of this "
                          f"recording (encrypted to {', '.join(m.recipient_fingerprints)})") from None

    async def open(self, rec: Recording, grant: Entry) -> Opened:
        if self.identities is None:
            raise Refused(409, self.refusal)
        key = (rec.recording_id, grant.seq)
        held = self._opened.get(key)
        if held is None or held.expires_at <= time.time():
            held = Grant(await asyncio.to_thread(self._open, rec), float(grant.data["expires_at"]))
            self._opened[key] = held
            while len(self._opened) > CACHE_SIZE:
                self._opened.popitem(last=False)
        self._opened.move_to_end(key)
        return held.opened

    async def plaintext(self, o: Opened, start: int, end: int) -> AsyncIterator[bytes]:
        """Plaintext bytes [start, end] (inclusive), window by window."""
        pos, stop, chunks = start, end + 1, FIRST_WINDOW
        while pos < stop:
            window_end = min(stop, (pos // CHUNK_SIZE + chunks) * CHUNK_SIZE)
            yield await asyncio.to_thread(self.archive.read, o, pos, window_end)
            # Windows grow while the reader keeps reading: a seek that abandons this
            # response wastes at most the window in flight.
            pos, chunks = window_end, min(WINDOW, chunks * 2)

    async def ciphertext(self, rec: Recording) -> tuple[int, AsyncIterator[bytes]]:
        """The original age file (header || payload): size and pieces; no key is used."""
        try:
            size, pieces = await asyncio.to_thread(self.archive.ciphertext, rec, WINDOW * (CHUNK_SIZE + 16))
        except Shredded:
            raise Refused(410, "the recording's key was destroyed (crypto-shredded)") from None

        async def stream() -> AsyncIterator[bytes]:
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                yield piece

        return size, stream()
