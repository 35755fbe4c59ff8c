"""The manifest: what the archiver records in the catalog about one encrypted
recording (sizes, SHA-256 of plaintext, payload and header, recipient
fingerprints), as compact JSON. Every later step (upload, verify, playback,
``archive verify``) checks the stored objects against it."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from storage.age import CHUNK_SIZE, FORMAT, EncryptionSummary, payload_size_for
from storage.errors import IntegrityError

__all__ = ["Manifest"]


@dataclass(frozen=True)
class Manifest:
    """What the archiver records about one encrypted recording."""

    plaintext_sha256: str
    payload_sha256: str
    header_sha256: str
    plaintext_size: int
    payload_size: int
    recipient_fingerprints: tuple[str, ...]
    chunk_size: int = CHUNK_SIZE
    format: str = FORMAT

    @classmethod
    def of(cls, summary: EncryptionSummary) -> Manifest:
        """The manifest of a finished encryption (``Encryptor.summary``)."""
        return cls(plaintext_sha256=summary.plaintext_sha256, payload_sha256=summary.payload_sha256,
                   header_sha256=summary.header_sha256, plaintext_size=summary.plaintext_size,
                   payload_size=summary.payload_size, recipient_fingerprints=summary.recipient_fingerprints)

    def to_json(self) -> str:
        d = asdict(self)
        d["recipient_fingerprints"] = list(self.recipient_fingerprints)
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise IntegrityError(f"manifest is not JSON: {exc}") from None
        names = set(cls.__dataclass_fields__)
        if not isinstance(d, dict) or set(d) != names:
            raise IntegrityError(f"manifest must have exactly the fields {sorted(names)}")
        hexes = ("plaintext_sha256", "payload_sha256", "header_sha256")
        fps = d["recipient_fingerprints"]
        ok = (all(isinstance(d[k], str) and re.fullmatch("[0-9a-f]{64}", d[k]) for k in hexes)
              and all(type(d[k]) is int and d[k] >= 0 for k in ("plaintext_size", "payload_size"))
              and isinstance(fps, list) and fps
              and all(isinstance(f, str) and re.fullmatch("[0-9a-f]{16}", f) for f in fps)
              and d["chunk_size"] == CHUNK_SIZE and d["format"] == FORMAT)
        if not ok or payload_size_for(d["plaintext_size"]) != d["payload_size"]:
            raise IntegrityError("manifest fields are malformed or inconsistent")
        d["recipient_fingerprints"] = tuple(fps)
        return cls(**d)
