"""The archive: where a recording lives once it is encrypted, and every way to reach it.

Two blob stores hold the two halves of each age file (docs/recording-format.md):

* the **payload store** (Object Lock): ``rec/<id>.age.payload``, the STREAM payload;
* the **header store** (deletable): ``hdr/<id>.age.header``, the age header with the
  file key wrapped to the recipients. Deleting it crypto-shreds the recording.

One ``Archive`` is built per process (``appliance/compose.py``) and shared by the
pipeline, the retention sweeper, playback in the web app, admin health and the CLI.
Everything here blocks; async callers run it in a thread. The catalog row and its
manifest say what should be stored; this module reads the stores and checks them
against it, and never writes the catalog or the ledger (its callers do).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from storage.age import CHUNK_SIZE, Decryptor, Identity, plaintext_range_to_chunks
from storage.blobstore import BlobStore, ObjectInfo
from storage.catalog import Recording
from storage.errors import NotFound

from .errors import ArchiverError
from .manifest import Manifest

NONCE_SIZE = 16  # the payload's first bytes: the STREAM nonce


class Shredded(ArchiverError):
    """The recording's header is gone (crypto-shredded): it can never be decrypted."""


class ManifestMismatch(ArchiverError):
    """What the store holds is not what the catalog's manifest says was stored."""


@dataclass(frozen=True)
class Opened:
    """A recording ready to decrypt: its file key unwrapped, its payload nonce read."""

    rec: Recording
    manifest: Manifest
    decryptor: Decryptor
    nonce: bytes


class Archive:
    def __init__(self, payload: BlobStore, headers: BlobStore):
        self.payload, self.headers = payload, headers
        # Payload bytes read by ranged GETs (playback and download; a metric).
        self.ranged_read_bytes = 0

    def __repr__(self) -> str:
        return f"Archive(payload={self.payload!r}, headers={self.headers!r})"

    # -- naming ---------------------------------------------------------------------

    @staticmethod
    def payload_key(recording_id: str) -> str:
        return f"rec/{recording_id}.age.payload"

    @staticmethod
    def header_key(recording_id: str) -> str:
        return f"hdr/{recording_id}.age.header"

    # -- set-up ---------------------------------------------------------------------

    def check_setup(self) -> None:
        """Both stores usable; ``PermanentError`` says what to fix."""
        self.payload.check_setup()
        self.headers.check_setup()

    def close(self) -> None:
        try:
            self.payload.close()
        finally:
            self.headers.close()

    # -- looking ----------------------------------------------------------------------

    @staticmethod
    def head(store: BlobStore, key: str, version_id: str | None = None) -> ObjectInfo | None:
        """``store.head`` without tags (nothing here reads them), or None if absent."""
        try:
            return store.head(key, version_id, tags=False)
        except NotFound:
            return None

    def held(self, rec: Recording) -> bool:
        """Whether the stored payload version carries a legal hold."""
        info = self.head(self.payload, rec.object_key, rec.version_id or None) if rec.object_key else None
        return info is not None and info.legal_hold

    def verify(self, rec: Recording) -> str | None:
        """Read back both objects of an archived recording and check them against its
        manifest: None when they match, else what is wrong (``MISSING: ...`` or
        ``MISMATCH: ...``)."""
        if rec.state != "archived":
            return f"MISMATCH: state is {rec.state}, not archived"
        m = Manifest.from_json(rec.manifest)
        digest, size = hashlib.sha256(), 0
        try:
            with self.payload.open_stream(rec.object_key, rec.version_id or None) as stream:
                for chunk in stream:
                    digest.update(chunk)
                    size += len(chunk)
            header = self.headers.get(rec.header_key)
        except NotFound as e:
            return f"MISSING: {e}"
        if size != m.payload_size or digest.hexdigest() != m.payload_sha256:
            return (f"MISMATCH: payload {rec.object_key} has {size} bytes sha256 {digest.hexdigest()}, "
                    f"manifest says {m.payload_size} bytes sha256 {m.payload_sha256}")
        if hashlib.sha256(header).hexdigest() != m.header_sha256:
            return f"MISMATCH: header {rec.header_key} does not match the manifest"
        return None

    # -- reading ----------------------------------------------------------------------

    def header(self, rec: Recording, m: Manifest) -> bytes:
        """The stored header, checked against ``m`` (the recording's manifest). Raises
        ``Shredded`` or ``ManifestMismatch``."""
        try:
            data = self.headers.get(rec.header_key)
        except NotFound:
            raise Shredded(f"recording {rec.recording_id}: its header is gone (crypto-shredded)") from None
        if hashlib.sha256(data).hexdigest() != m.header_sha256:
            raise ManifestMismatch(f"recording {rec.recording_id}: the stored header does not match the manifest")
        return data

    def open(self, rec: Recording, identities: Sequence[Identity]) -> Opened:
        """Unwrap the file key with ``identities`` and read the payload nonce. Raises
        ``Shredded``, ``ManifestMismatch`` or ``storage.age.NoMatchingIdentity``."""
        m = Manifest.from_json(rec.manifest)
        decryptor = Decryptor(self.header(rec, m), identities)
        nonce = self.payload_range(rec, 0, NONCE_SIZE)
        return Opened(rec, m, decryptor, nonce)

    def payload_range(self, rec: Recording, start: int, stop: int) -> bytes:
        """Payload bytes ``[start, stop)`` of the stored version (one ranged GET)."""
        data = self.payload.get(rec.object_key, rec.version_id or None, byte_range=(start, stop))
        self.ranged_read_bytes += len(data)
        return data

    def read(self, opened: Opened, start: int, stop: int) -> bytes:
        """Plaintext bytes ``[start, stop)``: only the STREAM chunks that hold them are
        fetched (one ranged GET) and decrypted."""
        span = plaintext_range_to_chunks(start, stop, opened.manifest.payload_size)
        data = self.payload_range(opened.rec, span.payload_start, span.payload_end)
        plain = opened.decryptor.decrypt_chunks(data, span.first_chunk, span.includes_last, nonce=opened.nonce)
        base = span.first_chunk * CHUNK_SIZE
        return plain[start - base:stop - base]

    def decrypt_to(self, rec: Recording, identities: Sequence[Identity], out: BinaryIO) -> int:
        """Decrypt the whole recording into ``out``; the plaintext is checked against the
        manifest (``ManifestMismatch``). Returns its size."""
        m = Manifest.from_json(rec.manifest)
        decryptor = Decryptor(self.header(rec, m), identities)
        digest, size = hashlib.sha256(), 0
        with self.payload.open_stream(rec.object_key, rec.version_id or None) as stream:
            for piece in decryptor.decrypt_stream(stream):
                out.write(piece)
                digest.update(piece)
                size += len(piece)
        if digest.hexdigest() != m.plaintext_sha256 or size != m.plaintext_size:
            raise ManifestMismatch(f"recording {rec.recording_id}: decrypted audio does not match the manifest")
        return size

    def ciphertext(self, rec: Recording, window: int) -> tuple[int, Iterator[bytes]]:
        """The original age file (header || payload): its size and its pieces, each at
        most ``window`` bytes of payload. No key is used. Raises ``Shredded``."""
        m = Manifest.from_json(rec.manifest)
        header = self.header(rec, m)

        def pieces() -> Iterator[bytes]:
            yield header
            for pos in range(0, m.payload_size, window):
                yield self.payload_range(rec, pos, min(m.payload_size, pos + window))

        return len(header) + m.payload_size, pieces()

    # -- changing -----------------------------------------------------------------------

    def set_legal_hold(self, rec: Recording, on: bool) -> None:
        """On the stored payload version: the store then refuses to delete it."""
        if rec.object_key:
            self.payload.set_legal_hold(rec.object_key, on, rec.version_id or None)

    def shred(self, recording_id: str, header_key: str | None = None) -> None:
        """Delete the header (every version): the payload can never be decrypted again."""
        self.headers.delete(header_key or self.header_key(recording_id))

