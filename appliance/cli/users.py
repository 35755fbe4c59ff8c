"""`callvault users add|list|disable`: who may use the web app, and as what.

Roles (what each may do is in ``appliance/web/auth.py``): ``agent`` (own live calls,
PCI pause), ``supervisor`` (search, play, download), ``officer`` (as supervisor, plus
legal holds), ``admin`` (health, dialplan, keys, test calls; no recordings).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from storage.errors import NotFound, StorageError
from storage.users import ROLES, UserError, Users

from .common import database, load_config, with_config


@contextlib.contextmanager
def _users(args: argparse.Namespace) -> Iterator[Users]:
    with database(load_config(args)) as db:
        yield Users(db)


def _password(args: argparse.Namespace) -> str:
    """From ``--password-stdin`` or ``--password-file`` (first line), else asked twice on
    the terminal. Without a terminal there is nobody to ask: say which option to use."""
    if args.password_stdin or args.password_file == "-":
        line = sys.stdin.readline()
        if not line:
            raise UserError("no password on standard input")
        return line.rstrip("\r\n")
    if args.password_file:
        lines = Path(args.password_file).read_text("utf-8").splitlines()
        return lines[0] if lines else ""
    if not sys.stdin.isatty():
        raise UserError("no terminal to ask for the password on; pipe it with --password-stdin "
                        "or name a file with --password-file FILE")
    try:
        first = getpass.getpass(f"password for {args.name}: ")
        again = getpass.getpass("again: ")
    except EOFError:
        raise UserError("no password given") from None
    if again != first:
        raise UserError("the passwords differ")
    return first


def cmd_users_add(args: argparse.Namespace) -> int:
    ids = list(args.agent_channel or []) + [f"did:{d}" for d in args.did or []]
    if ids and args.role != "agent":
        print("callvault: --agent-channel/--did are for agents only", file=sys.stderr)
        return 2
    password = _password(args)
    with _users(args) as users:
        user = users.add(args.name, args.role, password, ids)
    extra = f" ({', '.join(user.agent_ids)})" if user.agent_ids else ""
    print(f"user {user.name} added as {user.role}{extra}")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    with _users(args) as users:
        rows = users.list()
    if args.json:
        print(json.dumps([u.as_dict() for u in rows], indent=2))
        return 0
    print(f"{'name':24} {'role':10} {'state':9} agent identifiers")
    for u in rows:
        print(f"{u.name:24} {u.role:10} {'disabled' if u.disabled else 'active':9} {', '.join(u.agent_ids)}")
    return 0


def cmd_users_disable(args: argparse.Namespace) -> int:
    with _users(args) as users:
        users.disable(args.name)
    print(f"user {args.name} disabled; their sessions are ended")
    return 0


def _guard(fn):
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except UserError as e:
            print(f"callvault: {e}", file=sys.stderr)
            return 2
        except NotFound as e:
            print(f"callvault: no such {e}", file=sys.stderr)
            return 1
        except (StorageError, OSError) as e:
            print(f"callvault: {e}", file=sys.stderr)
            return 1
    return run


def add_commands(sub: argparse._SubParsersAction) -> None:
    users = sub.add_parser("users", help="web users and roles").add_subparsers(dest="users_cmd", required=True)
    add = with_config(users.add_parser("add", help="add a user (password asked on the terminal, or "
                                                   "--password-stdin, or --password-file)"))
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--agent-channel", action="append", metavar="CHANNEL",
                     help="the agent's phone, e.g. PJSIP/1001 (repeatable); calls bridged to it are theirs")
    add.add_argument("--did", action="append", metavar="NUMBER",
                     help="a direct line: calls to this DID are the agent's (repeatable)")
    given = add.add_mutually_exclusive_group()
    given.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of standard input")
    given.add_argument("--password-file", metavar="FILE", help="read the password from FILE's first line ('-': stdin)")
    add.set_defaults(fn=_guard(cmd_users_add))
    ls = with_config(users.add_parser("list", help="list users"))
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=_guard(cmd_users_list))
    dis = with_config(users.add_parser("disable", help="refuse a user's logins and end their sessions"))
    dis.add_argument("name")
    dis.set_defaults(fn=_guard(cmd_users_disable))
