"""`callvault-agi ROUTE [ARGS]`: the consent handlers for ``AGI(script)`` dialplans.

For administrators who cannot point Asterisk at the FastAGI server::

    exten => _X.,1,Set(CALLVAULT_CONSENT=error)
     same => n,Set(CALLVAULT_RECORD=no)
     same => n,AGI(callvault-agi,consent,${EXTEN})

Options come before the route: ``callvault-agi -c /etc/callvault/callvault.toml consent
${EXTEN}``; without ``-c`` the file named by ``CALLVAULT_CONFIG`` is read, else
``/etc/callvault/callvault.toml``. The same handlers run with the same dependencies as
under ``callvault serve`` (``appliance.compose.agi_routes``), writing to the same ledger and catalog.

Every failure is failed closed: ``CALLVAULT_RECORD=no``, ``CALLVAULT_CONSENT=error``
and one line to stderr (Asterisk's console) and syslog. The process always exits 0 so
the dialplan goes on.

Costs and limits, compared with FastAGI:

* one Python process per call: startup and imports are most of its cost, about
  90-120 ms of CPU per call on a 2-core test machine, about 2.3 times a bare pyst2
  script, against ~3 ms for a FastAGI flow (``python -m bench agi --classic``). The
  handlers run without an event loop (``agi.inline``); only the called route is
  built, and the path imports no asyncio, AMI client, archiver, age encryption,
  pydub or other route's handler (a test checks it);
* no AMI: ``revoke`` stops MixMonitor with ``EXEC StopMixMonitor``, which acts on the
  AGI's own channel only. A recording on another channel (the feature code dialled
  on the agent's leg) is flagged for erasure in the catalog, so it is shredded and
  never archived, but it goes on being written until that channel hangs up.
  ``pause`` and ``resume`` cannot mute at all (``MixMonitorMute`` is AMI only): they
  leave ``CALLVAULT_PCI=failed``, so an IVR does not collect card digits.
"""

from __future__ import annotations

import logging
import os
import sys
import syslog
import warnings
from collections.abc import Sequence

# Only what the fail-closed path needs is imported up front: a broken dependency of
# the handlers (or of the config) must still let this process answer Asterisk.
from agi.classic import PystSession, call_label, describe, fail_closed, run_call
from agi.inline import run
from agi.interface import AgiSession

from .compose import StopMixMonitor

log = logging.getLogger("callvault-agi")

DEFAULT_CONFIG = "/etc/callvault/callvault.toml"
USAGE = "usage: callvault-agi [-c CONFIG] ROUTE [ARGS...]"


class UsageError(Exception):
    pass


def parse_argv(argv: Sequence[str]) -> tuple[str, str, list[str]]:
    """``[-c CONFIG] ROUTE [ARGS...]`` -> (config path, route, args).

    Hand-parsed: Asterisk passes dialplan values (a DID, "-", "+2721...") as
    arguments, and argparse would take some of them for options or exit(2).
    """
    rest = list(argv)
    path = os.environ.get("CALLVAULT_CONFIG") or DEFAULT_CONFIG
    if rest and rest[0] in ("-c", "--config"):
        if len(rest) < 2 or not rest[1]:
            raise UsageError(f"{rest[0]} needs a file; {USAGE}")
        path, rest = rest[1], rest[2:]
    elif rest and rest[0].startswith("--config="):
        path, rest = rest[0].partition("=")[2], rest[1:]
    if not rest or not rest[0]:
        raise UsageError(f"no route; {USAGE}")
    return path, rest[0], rest[1:]


def _own_channel_stopper(session: AgiSession) -> StopMixMonitor:
    async def stop_mixmonitor(channel: str) -> bool:
        if channel == session.env.channel:
            await session.exec("StopMixMonitor")
            return True
        # No AMI here: the recording is flagged for erasure by the revoke handler and
        # ends when its channel hangs up (see the module docstring).
        log.warning("%s: MixMonitor on another channel cannot be stopped without AMI; "
                    "the recording is erased instead of archived", call_label(session, "revoke"))
        return False

    return stop_mixmonitor


async def _no_mute(channel: str, paused: bool) -> None:
    from agi.controls import ControlError  # the pause and resume routes only

    # MixMonitorMute is an AMI action only: there is no dialplan application for it.
    raise ControlError(f"cannot mute MixMonitor on {channel} without AMI; "
                       "run pause and resume over FastAGI (`callvault serve`)")


async def _serve(session: PystSession, parsed: tuple[str, str, list[str]] | UsageError) -> None:
    if isinstance(parsed, UsageError):
        await fail_closed(session, f"{call_label(session)}: {parsed}")
        return
    path, route, _ = parsed
    where = call_label(session, route)
    try:
        from storage.hmac_index import load_hmac_key
        from storage.ledger import Ledger

        from . import compose
        from . import config as cfg

        config = cfg.load(path, check_paths=False)
        db = compose.open_database(config)
    except Exception as exc:  # the process boundary
        problems = getattr(exc, "problems", None)  # ConfigError: one line per problem
        await fail_closed(session, f"{where}: " + ("; ".join(problems) if problems
                                                   else f"setup failed: {describe(exc)}"))
        return
    try:
        try:
            ledger, catalog = Ledger(db), compose.catalog(config, db)
            key = load_hmac_key(config.privacy.hmac_key_file)
            routes = compose.agi_routes(config, ledger=ledger, catalog=catalog, hmac_key=key,
                                stop_mixmonitor=_own_channel_stopper(session), mute_mixmonitor=_no_mute,
                                blocking=True, only=route)
        except Exception as exc:  # the process boundary
            await fail_closed(session, f"{where}: setup failed: {describe(exc)}")
            return
        handler = routes.get(route)
        if handler is None:
            await fail_closed(session, f"{where}: unknown route (known: {', '.join(sorted(compose.AGI_ROUTES))})")
            return
        await run_call(session, handler, route)
    finally:
        db.close()


class _Syslog(logging.Handler):
    """To syslog (facility daemon) through libc, tagged ``callvault-agi[PID]``.

    Not ``logging.handlers.SysLogHandler``: that module imports pickle, socket and
    queue, a few ms of every call's CPU, for a handler that writes the same line.
    """

    _PRIORITY = ((logging.CRITICAL, syslog.LOG_CRIT), (logging.ERROR, syslog.LOG_ERR),
                 (logging.WARNING, syslog.LOG_WARNING), (logging.INFO, syslog.LOG_INFO))

    def __init__(self) -> None:
        super().__init__()
        syslog.openlog("callvault-agi", syslog.LOG_PID, syslog.LOG_DAEMON)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            priority = next((p for level, p in self._PRIORITY if record.levelno >= level), syslog.LOG_DEBUG)
            syslog.syslog(priority, self.format(record))
        except Exception:  # logging's rule: a handler never raises
            self.handleError(record)


def _setup_logging() -> None:
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("callvault-agi[%(process)d]: %(message)s"))
    root.addHandler(stderr)
    if os.path.exists("/dev/log"):
        root.addHandler(_Syslog())


def main(argv: list[str] | None = None) -> int:
    """Serve one call on stdin/stdout; always 0 so the dialplan continues."""
    argv = sys.argv[1:] if argv is None else argv
    # fd 1 belongs to the AGI dialogue: a stray print() must not reach Asterisk.
    sys.stdout = sys.stderr
    _setup_logging()
    # pydub scans PATH at import and warns where Asterisk has no ffmpeg; this path
    # does not import it (announcements imports it lazily), but if a dependency ever
    # does, neither is this process's business.
    os.environ.setdefault("PATH", os.defpath)
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="pydub")
    parsed: tuple[str, str, list[str]] | UsageError
    try:
        parsed = parse_argv(argv)
    except UsageError as exc:
        parsed = exc
    try:
        session = PystSession.open(parsed[2] if isinstance(parsed, tuple) else ())
    except Exception as exc:  # no session: nothing can be told to the dialplan
        log.error("no AGI session: %s", describe(exc))
        return 0
    try:
        run(_serve(session, parsed))
    except Exception as exc:  # last resort; _serve fails closed on its own
        log.error("%s: %s", call_label(session), describe(exc))
    finally:
        session.close()
        logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
