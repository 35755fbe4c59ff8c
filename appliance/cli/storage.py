"""`callvault storage init`: create the archive storage the config names, once."""

from __future__ import annotations

import argparse

from archiver.errors import ArchiverError
from storage.errors import StorageError

from .. import compose
from .common import guarded, load_config, with_config


@guarded(StorageError, ArchiverError, ValueError)
def cmd_init(args: argparse.Namespace) -> int:
    for line in compose.init_archive(load_config(args)):
        print(f"ready: {line}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    storage = sub.add_parser("storage", help="archive storage").add_subparsers(dest="storage_cmd", required=True)
    with_config(storage.add_parser("init", help="create the local store or the S3 buckets the config names")
                ).set_defaults(fn=cmd_init)
