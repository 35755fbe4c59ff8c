"""`callvault serve|status|config check|dialplan|systemd-unit|call pause|resume`: running the appliance."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .. import compose
from .. import config as cfg
from ..cautions import cautions
from ..nodeconfig import ASTERISK_ROLES
from .common import database, fail, load_config, os_account, with_config


def cmd_serve(args: argparse.Namespace) -> int:
    from ..logs import configure
    from ..service import serve

    config = load_config(args, check_paths=True)
    check_notices(config, args.config)
    configure(config.log, verbose=args.verbose)
    for line in cautions(config):
        logging.getLogger("callvault").warning("%s: warning: %s", args.config, line)
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
    config = cfg.load(args.config)
    check_notices(config, args.config)
    check_hmac_key(config)
    for line in cautions(config):
        print(f"{args.config}: warning: {line}", file=sys.stderr)
    print(f"{args.config}: ok")
    return 0


def check_hmac_key(config: cfg.Config) -> None:
    """On a shared database that answers, this node's caller-number HMAC key must be the
    one the database records (``serve`` records it at first use; this only reads)."""
    from archiver.errors import SetupError
    from storage.errors import StorageError
    from storage.nodes import Nodes

    from ..cluster import hmac_mismatch, shared

    path = config.privacy.hmac_key_file
    if not shared(config) or not path.is_file():
        return
    try:
        with database(config) as db:
            recorded = Nodes(db).recorded_fingerprint()
    except (StorageError, OSError) as e:
        print(f"[database] url: not reachable now ({e}); the HMAC key is checked again at start",
              file=sys.stderr)
        return
    problem = hmac_mismatch(config, path.read_bytes(), recorded)
    if problem:
        raise SetupError(problem)


def cmd_status(args: argparse.Namespace) -> int:
    """Up or down per part, from `/healthz`; the archive queue from the catalog."""
    from ..web.health import PARTS

    config = load_config(args)
    host, port = config.web.address
    scheme, context = "http", None
    if config.web.tls_cert is not None:
        from ..tls import pinned_client_context

        try:
            scheme, context = "https", pinned_client_context(config.web.tls_cert)
        except (OSError, ValueError) as e:
            return fail(f"[web] tls_cert = {str(config.web.tls_cert)!r}: cannot read it ({e}); "
                        "`callvault config check` says more", 2)
    base = f"{scheme}://{_url_host(host)}:{port}"
    url = f"{base}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as r:
            health = json.load(r)
    except urllib.error.HTTPError as e:  # 503: answered, something is down
        with e:
            health = json.load(e) if e.code == 503 else {"status": "down", "down": [f"web (HTTP {e.code})"]}
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, ssl.SSLCertVerificationError):
            print(f"the web at {base} does not present the certificate in [web] tls_cert "
                  f"({reason.verify_message}); is another service on that port, or was the certificate "
                  "replaced without restarting serve?")
            return 1
        print(f"callvault is not running (no answer from {url}: {getattr(e, 'reason', e)})")
        return 1
    down = health.get("down", [])
    if args.json:
        print(json.dumps(health, indent=2))
    else:
        print(f"web:      up at {base}/")
        for part in PARTS:
            if part == "ami" and config.node.role not in ASTERISK_ROLES:
                print(f"ami:      none on this node (role {config.node.role})")
                continue
            print(f"{part + ':':<9} {'DOWN' if part in down else 'up'}")
        _print_queue(config)
        _print_nodes(config)
    return 0 if health.get("status") == "up" else 1


def _print_queue(config: cfg.Config) -> None:
    from storage.errors import StorageError

    try:
        with database(config) as db:
            catalog = compose.catalog(config, db)
            queue, quarantined = catalog.queue_counts(), catalog.quarantined_count()
    except (StorageError, OSError) as e:
        print(f"queue:    unknown ({e})")
        return
    waiting = ", ".join(f"{k} {v}" for k, v in sorted(queue.items()) if k != "archived") or "empty"
    print(f"queue:    {waiting}")
    if queue.get("failed"):
        print(f"          {queue['failed']} dead letter(s): `callvault recordings list --state failed`")
    if quarantined:
        print(f"          {quarantined} in quarantine (plaintext): `callvault recordings retry ID --reason ...` "
              "or `callvault recordings erase ID --reason ...`")


def _print_nodes(config: cfg.Config) -> None:
    """Every node registered in the database, with when it was last seen."""
    from storage.errors import StorageError
    from storage.nodes import DOWN_AFTER, Nodes

    try:
        with database(config) as db:
            rows = Nodes(db).list()
    except (StorageError, OSError) as e:
        print(f"nodes:    unknown ({e})")
        return
    print("nodes:")
    for n in rows:
        d = n.as_dict()
        queue = ", ".join(f"{k} {v}" for k, v in sorted(n.queue.items())) or "empty"
        state = "up" if n.up() else f"DOWN (not seen for over {DOWN_AFTER:g} s)"
        print(f"  {n.name:<20} {n.role:<9} {state:<6} last seen {d['seen_ago_s']:g} s ago, AMI {n.ami}, "
              f"queue {queue}, version {n.version}")


def _url_host(host: str) -> str:
    """The address to reach a listener bound to ``host`` from this machine."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def cmd_dialplan(args: argparse.Namespace) -> int:
    from agi import dialplan

    snippets = dialplan.snippets(load_config(args), "<the [ami] secret from callvault.toml>")
    for name, text in snippets.items():
        print(f"; ---- {name} ----")
        print(text)
    return 0


async def _call_control(config: cfg.Config, channel: str, paused: bool) -> int:
    from agi.controls import ControlError, set_paused
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
                rec = await set_paused(ami, compose.catalog(config, db), Ledger(db).append_async, channel, paused,
                                       actor=os_account()["actor"], trigger="cli")
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
