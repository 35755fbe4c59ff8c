"""`callvault keys generate|list`: the age keys recordings are encrypted to."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from archiver.errors import ArchiverError
from storage.errors import StorageError

from .. import compose
from .common import fail, guarded, load_config, passphrase, with_config

_guard = guarded(StorageError, ArchiverError, ValueError)


@_guard
def cmd_generate(args: argparse.Namespace) -> int:
    from storage.age import Identity
    from storage.keys import identity_file_text, write_identity

    identity = Identity.generate()
    if args.out is None:
        if args.passphrase:
            return fail("--passphrase needs --out FILE", 2)
        sys.stdout.write(identity_file_text(identity))
        print(f"Public key: {identity.recipient}", file=sys.stderr)
        return 0
    secret = passphrase("passphrase for the new identity: ", confirm=True) if args.passphrase else None
    try:
        write_identity(args.out, identity, secret)
    except FileExistsError:
        return fail(f"{args.out} exists; refusing to overwrite a key file", 2)
    except FileNotFoundError:
        return fail(f"directory of {args.out} does not exist", 2)
    print(f"identity written to {args.out} (mode 0600{', passphrase-protected' if secret else ''})")
    print(f"public key: {identity.recipient}")
    print(f'add it to the config:  [archive] recipients = ["{identity.recipient}"]')
    return 0


@_guard
def cmd_list(args: argparse.Namespace) -> int:
    config = load_config(args)
    if not config.archive.recipients:
        return fail("no [archive] recipients configured; run `callvault keys generate`")
    for r in compose.recipients(config):
        print(f"{r.fingerprint}  {r}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="recording encryption keys").add_subparsers(dest="keys_cmd", required=True)
    gen = keys.add_parser("generate", help="make an age identity (private key) and print its public key")
    gen.add_argument("--out", type=Path, help="write the identity here (0600, never overwritten)")
    gen.add_argument("--passphrase", action="store_true",
                     help="protect the file with a passphrase (asked, or CALLVAULT_PASSPHRASE)")
    gen.set_defaults(fn=cmd_generate)
    with_config(keys.add_parser("list", help="configured recipients and fingerprints")).set_defaults(fn=cmd_list)
