"""`callvault lab up|down|call`: the sandbox Asterisk and S3 for people (appliance/lab/).

`lab up` also writes a development config for `callvault serve` that points at
the lab Asterisk, uses SQLite and the local encrypted store, and a freshly
generated development key pair (the private half stays in the data directory).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from pathlib import Path

DEFAULT_NAME = "lab"
DEFAULT_DATA = Path("var/dev")


def _port_or_free(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def cmd_lab_up(args: argparse.Namespace) -> int:
    from storage import keys
    from storage.age import Identity

    from .. import compose
    from .. import config as cfg
    from ..lab import multinode
    from ..lab.devsetup import dev_config, dev_users
    from ..lab.harness import Lab

    multinode.down(args.name)
    if args.pbx_nodes:
        return _cluster_up(args)
    lab = Lab(args.name, agi_port=_port_or_free(4573), with_s3=not args.no_s3)
    state = lab.up()
    data: Path = args.data_dir
    data.mkdir(parents=True, exist_ok=True)
    identity_path = data / "identity.txt"
    if not identity_path.exists():
        keys.write_identity(identity_path, Identity.generate())
    recipient = keys.load_identities(identity_path)[0].recipient
    (data / "ami.secret").write_text(state.product_ami_secret + "\n")
    (data / "ami.secret").chmod(0o600)
    if not args.no_prompts:
        _prompts(data, [state])
    config_path = data / "callvault.toml"
    config_path.write_text(dev_config(state, data, _port_or_free(args.web_port), str(recipient)))
    compose.init_archive(cfg.load(config_path, check_paths=False))
    logins = dev_users(data)
    print(f"lab '{args.name}' is up: Asterisk AMI 127.0.0.1:{state.ami_port}"
          + (f", S3 {state.s3['endpoint_url']}" if state.s3 else ""))
    print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in lab.timings.items()))
    print(f"config for `callvault serve`: {config_path}")
    print(f"development identity (private key): {identity_path}")
    print(f"web logins (agent, supervisor, admin): {logins}")
    return 0


def _prompts(data: Path, states) -> None:
    from announcements.library import PromptLibrary

    library = PromptLibrary(data / "prompts")
    built = library.build()
    for state in states:
        library.install(state.sounds_host)
    print(f"prompts: {len(built.generated)} generated, installed for {len(states)} lab Asterisk instance(s)")


def _cluster_up(args: argparse.Namespace) -> int:
    """N pbx nodes (one lab Asterisk each) and one retrieval node on PostgreSQL and RGW."""
    from ..lab import multinode
    from ..lab.devsetup import dev_users

    if args.no_s3:
        print("lab up: --pbx-nodes needs S3 (the nodes share the archive); drop --no-s3")
        return 2
    n = args.pbx_nodes
    agi_ports = [_port_or_free(4573 + i) for i in range(n)]
    web_ports = [_port_or_free(args.web_port + 1 + i) for i in range(n)] + [_port_or_free(args.web_port)]
    data: Path = args.data_dir
    cluster, states, first = multinode.up(args.name, n, data, web_ports, agi_ports=agi_ports)
    if not args.no_prompts:
        _prompts(data, states)
    logins = dev_users(data, cluster.db_url)
    print(f"lab '{args.name}' is up: {n} Asterisk instance(s), PostgreSQL {cluster.db_url}, "
          f"S3 {first.rgw.endpoint.endpoint_url if first.rgw else '-'} (pbx and retrieval users)")
    for node, state in zip(cluster.pbx, states, strict=True):
        print(f"  {node.name}: Asterisk AMI 127.0.0.1:{state.ami_port}, SIP 127.0.0.1:{state.sip_port}, "
              f"web 127.0.0.1:{node.web_port}; callvault serve -c {node.config}")
    r = cluster.retrieval
    print(f"  {r.name}: web 127.0.0.1:{r.web_port} (supervisors, playback); callvault serve -c {r.config}")
    print(f"development identity (private key, retrieval node only): {data / 'identity.txt'}")
    print(f"web logins (agent, supervisor, admin): {logins}")
    print(f"start each node: callvault serve -c CONFIG; place calls: callvault lab call --name "
          f"{multinode.pbx_lab_name(args.name, 2 if n > 1 else 1)} --digit 1")
    return 0


def cmd_lab_down(args: argparse.Namespace) -> int:
    from ..lab import multinode

    if multinode.down(args.name):
        print(f"lab '{args.name}' stopped")
    else:
        print(f"no lab named '{args.name}'")
    return 0


async def _call(args: argparse.Namespace) -> int:
    from agi.ami import AmiClient

    from ..lab.harness import Lab

    state = Lab.load_state(args.name)
    ami = AmiClient("127.0.0.1", state.ami_port, state.ami_user, state.ami_secret)
    ami.start()
    try:
        await ami.wait_connected(10)
        return await (_sip_call(args, state, ami) if args.sip else _local_call(args, ami))
    finally:
        await ami.close()


def _print_outcome(event) -> None:
    print(f"consent: {event.get('Consent') or '(none)'}  record: {event.get('Record') or '(none)'}")


async def _local_call(args: argparse.Namespace, ami) -> int:
    from ..lab.calls import CallDriver

    driver = CallDriver(ami)
    call = driver.new_call(args.did, args.caller)
    async with driver.agi_command(call, "GET DATA") as asked, \
            ami.expect(lambda e: e.name == "UserEvent" and call.is_callee(e)
                       and e.get("UserEvent") == "CallvaultLabAfterAgi") as done:
        await driver.place(call, hold=args.hangup_after)
        print(f"call placed: {call.callee_channel} (DID {args.did}, caller {args.caller})")
        if args.digit:
            try:
                await asyncio.wait_for(asked, 30)
            except TimeoutError:
                print("the consent flow did not ask for digits (is `callvault serve` running?)")
                return 1
            await driver.send_dtmf(call, args.digit)
            print(f"pressed {args.digit}")
        try:
            event = await asyncio.wait_for(done, 60)
        except TimeoutError:
            print("no consent outcome within 60 s")
            return 1
    _print_outcome(event)
    return 0


async def _sip_call(args: argparse.Namespace, state, ami) -> int:
    from ..lab.sip import CallerScript, SipCall, SippError, place_sip_calls

    if not state.sip_port:
        print(f"lab '{args.name}' has no SIP port: restart it with `callvault lab up`")
        return 1
    script = CallerScript(args.digit or None, wait=args.wait, hangup_after=args.hangup_after)
    print(f"SIP call to 127.0.0.1:{state.sip_port} (DID {args.did}, caller {args.caller}): "
          + (f"presses {args.digit} after {args.wait:g} s, " if script.presses else "presses nothing, ")
          + f"hangs up after {args.hangup_after:g} s")
    async with ami.expect(lambda e: e.name == "UserEvent" and e.get("UserEvent") == "CallvaultLabAfterAgi"
                          and str(e.get("Channel")).startswith("PJSIP/") and e.get("Exten") == args.did
                          and e.get("CallerIDNum") == args.caller) as done:
        try:
            run = await place_sip_calls(state.sip_port, [SipCall(args.caller, args.did)], script)
        except SippError as e:
            print(e)
            return 1
        await asyncio.sleep(0.2)  # an outcome raised just before the BYE
        if done.done():
            _print_outcome(done.result())
        else:
            print("consent: (none: no outcome before the caller hung up; is `callvault serve` running?)")
    if not run.ok:
        print(f"SIPp exited {run.returncode}: {run.errors}")
        return 1
    return 0


def cmd_lab_call(args: argparse.Namespace) -> int:
    return asyncio.run(_call(args))


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 8:
        raise argparse.ArgumentTypeError(f"{text} is not a node count from 1 to 8")
    return value


def _key(text: str) -> str:
    if len(text) != 1 or text not in "0123456789":
        raise argparse.ArgumentTypeError(f"{text!r} is not one digit 0-9")
    return text


def add_commands(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser("lab", help="sandbox Asterisk 22 + S3 for trying things out")
    lsub = lab.add_subparsers(dest="lab_cmd", required=True)
    up = lsub.add_parser("up", help="build (once) and start the lab; write a dev config")
    up.add_argument("--name", default=DEFAULT_NAME)
    up.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    up.add_argument("--web-port", type=int, default=8080)
    up.add_argument("--no-s3", action="store_true", help="Asterisk only")
    up.add_argument("--pbx-nodes", type=_count, default=0, metavar="N",
                    help="N pbx nodes (a lab Asterisk each) and one retrieval node on a lab PostgreSQL "
                         "and RGW with per-role S3 users; writes one config per node")
    up.add_argument("--no-prompts", action="store_true",
                    help="skip generating and installing the notice prompts (core sounds stand in)")
    up.set_defaults(fn=cmd_lab_up)
    down = lsub.add_parser("down", help="stop the lab")
    down.add_argument("--name", default=DEFAULT_NAME)
    down.set_defaults(fn=cmd_lab_down)
    call = lsub.add_parser("call", help="place a test call through the lab Asterisk")
    call.add_argument("--name", default=DEFAULT_NAME)
    call.add_argument("--sip", action="store_true",
                      help="a real SIP call from SIPp to the lab's PJSIP endpoint (default: a Local "
                           "channel driven over AMI)")
    call.add_argument("--did", default="27215550100")
    call.add_argument("--caller", default="27215550123")
    call.add_argument("--digit", type=_key, default="", help="the key the caller presses when asked")
    call.add_argument("--wait", type=_seconds, default=2.0,
                      help="with --sip: seconds after the answer before the key is pressed")
    call.add_argument("--hangup-after", type=_seconds, default=10.0,
                      help="seconds after the answer when the caller hangs up")
    call.set_defaults(fn=cmd_lab_call)


