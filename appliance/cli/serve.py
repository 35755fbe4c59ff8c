"""`callvault serve|status|config check|dialplan|systemd-unit|call pause|resume`: running the appliance."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .. import compose
from .. import config as cfg
from .common import database, fail, load_config, with_config


def cmd_serve(args: argparse.Namespace) -> int:
    from ..logs import configure
    from ..service import serve

    config = load_config(args, check_paths=True)
    check_notices(config, args.config)
    configure(config.log, verbose=args.verbose)
    return serve(config)


def cmd_systemd_unit(args: argparse.Namespace) -> int:
    from .. import systemd
    from ..service import DRAIN_SECONDS

    config = load_config(args)
    try:
        exec_path = Path(args.exec) if args.exec else systemd.executable()
    except FileNotFoundError as e:
        return fail(str(e))
    print(systemd.unit(config, Path(args.config), user=args.user, group=args.group or args.user,
                       exec_path=exec_path, drain=DRAIN_SECONDS), end="")
    return 0


def check_notices(config: cfg.Config, where: str) -> None:
    """An implied or opt-out rule whose notice is not installed is a configuration
    error: it would record callers who heard no notice."""
    problems = compose.notice_problems(config, where)
    if problems:
        raise cfg.ConfigError(problems)


def cmd_config_check(args: argparse.Namespace) -> int:
    check_notices(cfg.load(args.config), args.config)
    print(f"{args.config}: ok")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    config = load_config(args)
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

    config = load_config(args)
    host, port = config.agi.address
    url = f"agi://{host}:{port}"
    print("; ---- extensions.conf ----")
    print(dialplan.consent_context(url))
    print("; ---- features.conf ----")
    print(dialplan.features_snippet(url))
    print("; ---- manager.conf ----")
    print(dialplan.manager_stanza(config.ami.username, "<the [ami] secret from callvault.toml>"))
    return 0


async def _call_control(config: cfg.Config, channel: str, paused: bool) -> int:
    from agi.controls import ControlError, set_paused
    from storage.catalog import Catalog
    from storage.ledger import Ledger

    ami = compose.ami_client(config)
    with database(config) as db:
        ami.start()
        try:
            try:
                await ami.wait_connected(10)
            except TimeoutError:
                print(f"cannot reach Asterisk AMI at {config.ami.host}:{config.ami.port}: "
                      f"{ami.status.last_error or 'no answer'}", file=sys.stderr)
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


def cmd_call(args: argparse.Namespace) -> int:
    return asyncio.run(_call_control(load_config(args), args.channel, args.call_cmd == "pause"))


def add_commands(sub: argparse._SubParsersAction) -> None:
    with_config(sub.add_parser("serve", help="run the appliance")).set_defaults(fn=cmd_serve)
    st = with_config(sub.add_parser("status", help="what is connected and running"))
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)

    c = sub.add_parser("config", help="configuration").add_subparsers(dest="config_cmd", required=True)
    with_config(c.add_parser("check", help="validate a config file")).set_defaults(fn=cmd_config_check)

    with_config(sub.add_parser("dialplan", help="print dialplan, features and manager snippets")
                ).set_defaults(fn=cmd_dialplan)

    unit = with_config(sub.add_parser("systemd-unit", help="print the systemd service unit for this config"))
    unit.add_argument("--user", default="callvault", help="the account serve runs as (default callvault)")
    unit.add_argument("--group", default="", help="its group (default: the same name as --user)")
    unit.add_argument("--exec", default="", help="the callvault command (default: the installed one)")
    unit.set_defaults(fn=cmd_systemd_unit)

    call = sub.add_parser("call", help="mid-call controls").add_subparsers(dest="call_cmd", required=True)
    for name, text in (("pause", "mute the recording (PCI: card details)"), ("resume", "unmute it")):
        sp = with_config(call.add_parser(name, help=text))
        sp.add_argument("channel", help="the channel being recorded, e.g. PJSIP/trunk-0000002a")
        sp.set_defaults(fn=cmd_call)
