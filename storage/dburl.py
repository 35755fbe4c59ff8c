"""``[database] url``: which backend, where, and the URL with its password masked.

* SQLite (the embedded default): ``sqlite:////absolute/path.db`` (four slashes),
  ``sqlite:///relative/path.db`` (three) or a bare absolute path ``/var/lib/x.db``.
  In-memory databases are refused: the ledger must survive a restart.
* PostgreSQL: ``postgresql://user[:password]@host[:port]/dbname[?param=value...]``
  (``postgres://`` too), any libpq connection URI naming a database. The password is
  better kept out of the URL: libpq reads ``PGPASSWORD`` or ``~/.pgpass``.

:func:`open_database` opens the backend the URL names. :func:`parse_url` raises ``ValueError`` with the masked URL and the fix; the config
check turns it into an error naming ``[database] url``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    from .db import Database

__all__ = ["DbUrl", "mask", "open_database", "parse_url"]

_SQLITE = "sqlite:///"
_PG_SCHEMES = ("postgresql://", "postgres://")
_EXAMPLES = ("expected sqlite:////absolute/path.db or "
             "postgresql://user@host:5432/dbname")


@dataclass(frozen=True)
class DbUrl:
    """A database URL taken apart: dialect, and the file or the server to use."""

    dialect: str  # "sqlite" or "postgresql"
    url: str  # as configured (SQLite: normalised to sqlite:///...)
    path: Path | None = None  # SQLite only

    @property
    def masked(self) -> str:
        return mask(self.url)


def mask(url: str) -> str:
    """``url`` with any password (``user:secret@``, ``password=secret``) shown as ``***``."""
    url = re.sub(r"^([a-z]+://[^:/@?#]*):[^@/?#]*@", r"\1:***@", url)
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)


def parse_url(url: str) -> DbUrl:
    """Validate ``url``; ``ValueError`` naming the masked value and what to write instead."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"empty database URL: {_EXAMPLES}")
    if url.startswith("/") and "://" not in url:
        url = _SQLITE + url
    if url.startswith(_SQLITE):
        rest = url[len(_SQLITE):]
        if not rest or rest.endswith("/") or "?" in rest or rest == ":memory:":
            raise ValueError(f"{mask(url)}: needs a file path (no query string, no :memory:); {_EXAMPLES}")
        return DbUrl("sqlite", url, Path(rest))
    if url.startswith(_PG_SCHEMES):
        return DbUrl("postgresql", _check_pg(url))
    raise ValueError(f"{mask(url)}: unknown kind of database; {_EXAMPLES}")


def _check_pg(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
        query = dict(parse_qsl(parts.query, strict_parsing=bool(parts.query)))
    except ValueError as e:
        raise ValueError(f"{mask(url)}: not a valid PostgreSQL URL ({e}); {_EXAMPLES}") from None
    dbname = parts.path.lstrip("/") or query.get("dbname", "")
    if not dbname or "/" in dbname:
        raise ValueError(f"{mask(url)}: names no database; end the URL with /dbname, "
                         "e.g. postgresql://callvault@db.example:5432/callvault")
    if not (parts.hostname or query.get("host")):
        raise ValueError(f"{mask(url)}: names no host; write postgresql://user@HOST:5432/{dbname} "
                         "(or ?host=/run/postgresql for a local socket)")
    return url


def open_database(url: str, *, busy_timeout: float = 5.0) -> Database:
    """The database ``url`` names; ``ValueError`` if the URL is malformed."""
    parsed = parse_url(url)
    if parsed.dialect == "postgresql":
        from .pgdb import PgDatabase

        return PgDatabase(parsed.url, name=parsed.masked, busy_timeout=busy_timeout)
    from .sqlitedb import SqliteDatabase

    assert parsed.path is not None
    return SqliteDatabase(parsed.path, busy_timeout=busy_timeout)
