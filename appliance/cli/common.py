"""What every `callvault` command shares: the config option, loading it, and errors.

Exit codes: 0 ok, 1 failure, 2 bad input or config.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import getpass
import os
import pwd
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from .. import compose
from .. import config as cfg

DEFAULT_CONFIG = os.environ.get("CALLVAULT_CONFIG", "/etc/callvault/callvault.toml")

Command = Callable[[argparse.Namespace], int]


def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``-c/--config`` to a subcommand."""
    sp.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                    help=f"config file (default {DEFAULT_CONFIG}; CALLVAULT_CONFIG)")
    return sp


def load_config(args: argparse.Namespace, *, check_paths: bool = False) -> cfg.Config:
    """The config ``-c`` names; the default file may be absent (embedded defaults,
    environment and overrides only). Raises ``ConfigError``."""
    path = args.config
    if path == DEFAULT_CONFIG and not Path(path).exists():
        path = None
    return cfg.load(path, check_paths=check_paths)


@contextlib.contextmanager
def database(config: cfg.Config) -> Iterator:
    db = compose.open_database(config)
    try:
        yield db
    finally:
        db.close()


def identity_file(args: argparse.Namespace, config: cfg.Config) -> Path | None:
    """``--identity``, else ``[web] identity_file``; None when neither names one."""
    return args.identity or config.web.identity_file


NO_IDENTITY = "no identity: pass --identity FILE or set [web] identity_file in the config"


def read_identities(path: Path) -> list:
    """The age identities in ``path``, asking for its passphrase if it is encrypted."""
    from storage.age import VERSION_LINE
    from storage.keys import load_identities

    encrypted = path.read_bytes()[:len(VERSION_LINE)] == VERSION_LINE
    return load_identities(path, passphrase(f"passphrase for {path}: ") if encrypted else None)


def fail(message: str, code: int = 1) -> int:
    print(f"callvault: {message}", file=sys.stderr)
    return code


def guarded(*errors: type[BaseException], code: int = 1) -> Callable[[Command], Command]:
    """Turn ``errors`` raised by a command into one line on stderr and exit ``code``."""
    def wrap(fn: Command) -> Command:
        @functools.wraps(fn)
        def run(args: argparse.Namespace) -> int:
            try:
                return fn(args)
            except errors as e:
                return fail(str(e), code)
        return run
    return wrap


def passphrase(prompt: str, confirm: bool = False) -> str:
    """``CALLVAULT_PASSPHRASE``, else asked on the terminal."""
    env = os.environ.get("CALLVAULT_PASSPHRASE")
    if env:
        return env
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("again: ") != first:
        raise ValueError("the passphrases differ")
    return first


def os_account() -> dict[str, object]:
    """Who runs this command, as the audit ledger records it: the OS uid and its account
    name from the password database (never ``$USER`` or ``$LOGNAME``, which any caller sets)."""
    uid = os.getuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (containers): the uid alone
        name = f"uid {uid}"
    return {"actor": name, "uid": uid, "via": "cli"}


def reason(text: str) -> str:
    """An argparse type: the why of an audited action, never blank."""
    text = text.strip()
    if not text:
        raise argparse.ArgumentTypeError("must not be blank; say why (it goes into the audit ledger)")
    return text


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")
