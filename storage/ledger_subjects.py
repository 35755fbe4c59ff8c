"""Index of consent entries by caller: table ``ledger_subjects (caller_hmac, seq)``.

Every ``consent`` ledger entry carries the caller's HMAC in its body; finding one
data subject's consents would otherwise read every consent entry of the ledger. The
ledger writes one row here in the same transaction as each consent entry it appends
(:meth:`storage.ledger.Ledger.append` and the group-commit path alike), so the index
never lacks a committed entry. The migration backfills the consent entries written
before the table existed, once.

The index holds only what the ledger already holds (the HMAC, never a number); it is
not part of the chain and can be rebuilt from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .rows import MultiInsert

CONSENT_KIND = "consent"

_SQLITE_V1 = """
    CREATE TABLE ledger_subjects (
        caller_hmac TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        PRIMARY KEY (caller_hmac, seq)
    ) WITHOUT ROWID;
    INSERT INTO ledger_subjects (caller_hmac, seq)
        SELECT json_extract(body, '$.caller_hmac'), seq FROM ledger
        WHERE kind = 'consent' AND json_type(body, '$.caller_hmac') = 'text'
          AND json_extract(body, '$.caller_hmac') <> '';
"""

_PG_V1 = """
    CREATE TABLE ledger_subjects (
        caller_hmac TEXT NOT NULL,
        seq         BIGINT NOT NULL,
        PRIMARY KEY (caller_hmac, seq)
    );
    INSERT INTO ledger_subjects (caller_hmac, seq)
        SELECT body::jsonb ->> 'caller_hmac', seq FROM ledger
        WHERE kind = 'consent' AND jsonb_typeof(body::jsonb -> 'caller_hmac') = 'string'
          AND body::jsonb ->> 'caller_hmac' <> '';
    ANALYZE ledger_subjects;
"""

# Applied after the ledger's own migrations (the backfill reads table ``ledger``).
MIGRATIONS = {"sqlite": (_SQLITE_V1,), "postgresql": (_PG_V1,)}

INSERT = MultiInsert("ledger_subjects", ("caller_hmac", "seq"))


def subject_of(kind: str, body: Mapping[str, Any]) -> str | None:
    """The caller HMAC an entry is indexed under: a consent entry's ``caller_hmac``."""
    if kind != CONSENT_KIND:
        return None
    value = body.get("caller_hmac")
    return value if isinstance(value, str) and value else None


def query(columns: str, count: int) -> str:
    """The ledger entries (``columns`` of table ``ledger``) indexed under ``count``
    caller HMACs (``?`` placeholders), in seq order."""
    marks = ",".join("?" * count)
    return (f"SELECT {columns} FROM ledger WHERE seq IN "
            f"(SELECT seq FROM ledger_subjects WHERE caller_hmac IN ({marks})) ORDER BY seq")
