"""Composition: the pieces from agi/, archiver/ and storage/ wired for serve."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from aiohttp import web

from agi.routes import RouteTable
from archiver.service import Archiver

from .keys import AppKeys as K


def load_hmac_key(path: Path) -> bytes:
    """The key for caller-number HMACs: created once (0600), then never changed.

    Changing it would make earlier recordings unfindable by phone number.
    """
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
    if len(key) < 16:
        raise ValueError(f"{path}: HMAC key is {len(key)} bytes; expected 32 (delete it only "
                         "if no recordings exist yet)")
    return key


def build_routes(app: web.Application) -> RouteTable:
    return RouteTable([])


def build_archiver(app: web.Application) -> Archiver:
    config = app[K.config]
    return Archiver(config.spool.dir, scan_interval=config.spool.scan_interval)
