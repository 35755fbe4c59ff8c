"""`callvault` command line: one leaf module per command group.

Exit codes: 0 ok, 1 failure, 2 bad input or config. Each leaf adds its commands with
``add_commands(subparsers)`` and builds what it needs through ``appliance.compose``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from archiver.errors import SetupError

from .. import config as cfg
from . import (
    cases,
    catalog,
    erasure,
    keys,
    lab,
    ledger,
    objections,
    prompts,
    recordings,
    reports,
    serve,
    storage,
    subject,
    users,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="callvault", description=__doc__.split("\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)
    for leaf in (serve, ledger, storage, keys, recordings, catalog, users, prompts, lab, subject, objections, cases,
                 erasure, reports):
        leaf.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.fn(args)
    except cfg.ConfigError as e:
        for line in e.problems:
            print(line, file=sys.stderr)
        return 2
    except SetupError as e:
        print(e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
