"""`callvault` command line. Exit codes: 0 ok, 1 failure, 2 bad input or config."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from archiver.errors import SetupError

from . import config as cfg

DEFAULT_CONFIG = os.environ.get("CALLVAULT_CONFIG", "/etc/callvault/callvault.toml")


def _load(args: argparse.Namespace, *, check_paths: bool = True) -> cfg.Config:
    path = args.config
    if path == DEFAULT_CONFIG and not Path(path).exists():
        path = None  # embedded defaults, environment and overrides only
    return cfg.load(path, check_paths=check_paths)


def cmd_config_check(args: argparse.Namespace) -> int:
    cfg.load(args.config)
    print(f"{args.config}: ok")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .service import serve

    return serve(_load(args))


def cmd_status(args: argparse.Namespace) -> int:
    config = _load(args, check_paths=False)
    host, port = config.web.address
    url = f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            health = json.load(r)
    except (urllib.error.URLError, OSError) as e:
        print(f"callvault is not running (no answer from {url}: {getattr(e, 'reason', e)})")
        return 1
    if args.json:
        print(json.dumps(health, indent=2))
    else:
        ami, agi, arch = health["ami"], health["agi"], health["archiver"]
        print(f"web:      running at http://{host}:{port}/ (up {health['uptime_s']:.0f} s)")
        extra = ami.get("asterisk_version") or ami.get("last_error") or ""
        print(f"ami:      {ami['state']}  {extra}".rstrip())
        print(f"agi:      {'listening' if agi.get('listening') else 'stopped'} "
              f"({agi.get('active', 0)} active, {agi.get('total', 0)} handled)")
        queue = ", ".join(f"{k} {v}" for k, v in sorted(arch.get("queue", {}).items())) or "empty"
        print(f"archiver: {'running' if arch.get('running') else 'stopped'}; queue: {queue}; "
              f"spool files: {arch.get('spool_files', 0)}")
        if arch.get("storage_down_since"):
            since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(arch["storage_down_since"]))
            print(f"storage:  UNREACHABLE since {since}; {arch.get('backlog', 0)} recording(s) wait "
                  f"(kept in the spool): {arch.get('last_error', '')}")
        if arch.get("dead_letters"):
            print(f"          {arch['dead_letters']} dead letter(s): `callvault recordings list --state failed`")
    return 0 if health["ami"]["state"] == "connected" else 1


def cmd_dialplan(args: argparse.Namespace) -> int:
    from agi import dialplan

    config = _load(args, check_paths=False)
    host, port = config.agi.address
    url = f"agi://{host}:{port}"
    print("; ---- extensions.conf ----")
    print(dialplan.consent_context(url))
    print("; ---- features.conf ----")
    print(dialplan.features_snippet(url))
    print("; ---- manager.conf ----")
    print(dialplan.manager_stanza(config.ami.username, "<the [ami] secret from callvault.toml>"))
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    from storage.db import open_database
    from storage.ledger import Ledger

    config = _load(args, check_paths=False)
    db = open_database(config.database.url)
    try:
        ledger = Ledger(db)
        if args.ledger_cmd == "verify":
            result = ledger.verify()
            if result.ok:
                print(f"ledger ok: {result.checked} entries, head {result.head[1][:16]}… at seq {result.head[0]}")
                return 0
            print(f"ledger BROKEN at entry {result.bad_seq}: {result.reason}")
            return 1
        out = open(args.out, "w") if args.out not in (None, "-") else sys.stdout
        try:
            seq, head = ledger.export_jsonl(out)
        finally:
            if out is not sys.stdout:
                out.close()
        print(f"exported {seq} entries; head {head}", file=sys.stderr)
        return 0
    finally:
        db.close()


async def _call_control(config: cfg.Config, channel: str, paused: bool) -> int:
    from agi.ami import AmiClient
    from agi.controls import ControlError, set_paused
    from storage.catalog import Catalog
    from storage.db import open_database
    from storage.ledger import Ledger

    c = config.ami
    ami = AmiClient(c.host, c.port, c.username, c.secret.reveal() if c.secret else "",
                    reconnect_min=c.reconnect_min, reconnect_max=c.reconnect_max)
    db = open_database(config.database.url)
    ami.start()
    try:
        try:
            await ami.wait_connected(10)
        except TimeoutError:
            print(f"cannot reach Asterisk AMI at {c.host}:{c.port}: {ami.status.last_error or 'no answer'}",
                  file=sys.stderr)
            return 1
        try:
            rec = await set_paused(ami, Catalog(db), Ledger(db).append_async, channel, paused,
                                   actor=f"cli:{os.environ.get('USER', 'root')}")
        except ControlError as e:
            print(str(e), file=sys.stderr)
            return 2
        state = "paused" if paused else "recording"
        print(f"{channel}: {state} (recording {rec.recording_id}, {len(rec.pause_intervals)} pause(s))")
        return 0
    finally:
        await ami.close()
        db.close()


def cmd_call(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_call_control(_load(args, check_paths=False), args.channel,
                                     args.call_cmd == "pause"))


def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``-c/--config`` to a subcommand."""
    sp.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                    help=f"config file (default {DEFAULT_CONFIG}; CALLVAULT_CONFIG)")
    return sp


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="callvault", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)

    with_config(sub.add_parser("serve", help="run the appliance")).set_defaults(fn=cmd_serve)
    st = with_config(sub.add_parser("status", help="what is connected and running"))
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)

    c = sub.add_parser("config", help="configuration").add_subparsers(dest="config_cmd", required=True)
    with_config(c.add_parser("check", help="validate a config file")).set_defaults(fn=cmd_config_check)

    with_config(sub.add_parser("dialplan", help="print dialplan, features and manager snippets")
                ).set_defaults(fn=cmd_dialplan)

    lg = sub.add_parser("ledger", help="consent and audit ledger").add_subparsers(dest="ledger_cmd", required=True)
    with_config(lg.add_parser("verify", help="check the hash chain")).set_defaults(fn=cmd_ledger)
    ex = with_config(lg.add_parser("export", help="write the ledger as JSON lines"))
    ex.add_argument("-o", "--out", default="-")
    ex.set_defaults(fn=cmd_ledger)

    call = sub.add_parser("call", help="mid-call controls").add_subparsers(dest="call_cmd", required=True)
    for name, text in (("pause", "mute the recording (PCI: card details)"), ("resume", "unmute it")):
        sp = with_config(call.add_parser(name, help=text))
        sp.add_argument("channel", help="the channel being recorded, e.g. PJSIP/trunk-0000002a")
        sp.set_defaults(fn=cmd_call)

    from .archivecli import add_archive_commands
    from .labcli import add_lab_commands
    from .userscli import add_user_commands

    add_archive_commands(sub)
    add_user_commands(sub)
    add_lab_commands(sub)
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
