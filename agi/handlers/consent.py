"""The consent flow: notice, answer, ledger entry, channel variables, MixMonitor.

Order matters for the guarantee "nothing is recorded without a basis": the outcome
is decided, then appended to the ledger (durably), and only then is MixMonitor
started and ``CALLVAULT_RECORD=yes`` set. If the ledger write fails the handler
raises and the server fails the call closed (not recorded).

The notice is the installed prompt for the rule's mode and language chain, and the
consent entry names it exactly (id, language played, version, each installed
file's SHA-256). When it is not installed (prompts removed after start) nothing
stands in for it: the handler raises ``NoticeNotInstalled`` before playing
anything and the server fails the call closed. A missing confirmation or
"invalid choice" prompt is skipped with a warning.

Under an all-party rule (``parties = "all"``) the caller's "yes" does not start
anything: the entry is written with ``record = false`` and the called party is asked
in the pre-bridge subroutine (handlers/callee.py), whose "yes" starts MixMonitor.
The notice names the rule's keys (``allow_key``/``refuse_key``): the keyed prompt
variant is played (announcements/catalog.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from storage import logcontext
from storage.entries import ConsentBody
from storage.prompt_names import keyed_name
from storage.spool_names import done_marker, recording_file

from .. import variables as v
from ..errors import AgiHangup, CommandFailed, NoticeNotInstalled
from ..interface import AgiSession
from ..policy import Policy, Rule

log = logging.getLogger(__name__)

class InstalledPrompt(Protocol):
    """An installed prompt (announcements.manifest.InstalledPrompt)."""

    @property
    def sound(self) -> str: ...  # callvault/<lang>/<name>, as Asterisk plays it
    @property
    def name(self) -> str: ...
    @property
    def language(self) -> str: ...  # the language found along the chain
    @property
    def version(self) -> str: ...  # text-sha256:... | source-sha256:... | master-sha256:...
    @property
    def sha256(self) -> Mapping[str, str]: ...  # format -> SHA-256 of the installed file


class PromptResolver(Protocol):
    """The installed prompt for (language, name), or None when it is not installed."""

    def __call__(self, language: str, name: str) -> InstalledPrompt | None: ...


class AppendEvent(Protocol):
    """Appends a fact to the ledger; durable before the await returns."""

    async def __call__(self, kind: str, body: dict, *, call_id: str | None = None,
                       recording_id: str | None = None) -> object: ...


# The per-call holders below are plain classes with __slots__, not dataclasses: the
# classic AGI entry point imports this module in every call, and a dataclass costs
# some 0.5 ms of CPU to create.


class RecordingStart:
    __slots__ = ("consent", "path", "rule", "started_at")

    def __init__(self, consent: ConsentBody, path: str, rule: Rule, started_at: float):
        self.consent = consent  # the entry that allows it: ``record`` and ``recording_id`` set
        self.path = path  # as Asterisk names it
        self.rule = rule
        self.started_at = started_at


class AppendConsent(Protocol):
    """Appends ``start.consent`` AND registers its recording, in one durable step."""

    async def __call__(self, start: RecordingStart) -> object: ...


class ConsentDeps:
    def __init__(self, *, policy: Policy, append: AppendEvent, caller_hmac: Callable[[str], str],
                 prompt: PromptResolver, spool_dir: str,
                 on_recording: Callable[[RecordingStart], Awaitable[None]],
                 append_recording: AppendConsent | None = None, channels: str = "mono",
                 objected: Callable[[str], Awaitable[str | None]] | None = None):
        self.policy = policy
        self.append = append
        self.caller_hmac = caller_hmac
        self.prompt = prompt
        self.spool_dir = spool_dir  # as Asterisk names it
        self.on_recording = on_recording
        # When set, a consent that allows recording is appended together with its
        # recording's registration (one transaction, one fsync) instead of ``append``
        # then ``on_recording``. Either way both are durable before MixMonitor starts.
        self.append_recording = append_recording
        # "stereo": the caller (audio read from the channel) and the other side (audio
        # written to it) on separate channels, MixMonitor's ``D`` option into a ``.raw``
        # file; "mono": both mixed into one WAV.
        self.channels = channels
        # A standing objection in force for the caller (by caller HMAC): its id, or None.
        # Asked before the notice; an objected call is never recorded and hears no notice.
        self.objected = objected


class Outcome:
    __slots__ = ("attempts", "consent", "digits", "reason")

    def __init__(self, consent: str, reason: str, digits: str = "", attempts: int = 0):
        self.consent = consent  # granted | declined | implied | abandoned
        self.reason = reason
        self.digits = digits
        self.attempts = attempts

    @property
    def record(self) -> bool:
        return self.consent in ("granted", "implied")


_ID_BYTES = 12
# os.urandom read 4 KiB at a time: one getrandom() per ~340 ids instead of one per id
# (a syscall that costs tens of microseconds on a busy VM). Emptied in a forked child,
# so two processes never hand out the same bytes.
_random_pool = bytearray()
_random_lock = threading.Lock()


def _after_fork() -> None:
    global _random_lock
    _random_lock = threading.Lock()
    _random_pool.clear()


os.register_at_fork(after_in_child=_after_fork)


def new_id(prefix: str) -> str:
    # Random, fixed alphabet: safe in file names, dialplan and shell post-commands.
    with _random_lock:
        if len(_random_pool) < _ID_BYTES:
            _random_pool.extend(os.urandom(4096))
        token = _random_pool[-_ID_BYTES:]
        del _random_pool[-_ID_BYTES:]
    return f"{prefix}{token.hex()}"


def optional_prompt(prompt: PromptResolver, language: str, name: str) -> InstalledPrompt | None:
    """A prompt that is not a notice, or None (with a warning) when it is not installed."""
    found = prompt(language, name)
    if found is None:
        log.warning("prompt %s is not installed for language %s; skipped", name, language)
    return found


async def play_optional(session: AgiSession, prompt: PromptResolver, language: str, name: str) -> None:
    """Play a prompt that is not a notice; one that is missing or fails is skipped
    (the outcome is decided and in force; a sound must not undo it)."""
    found = optional_prompt(prompt, language, name)
    if found is None:
        return
    try:
        await session.stream_file(found.sound)
    except CommandFailed as e:
        log.warning("prompt %s could not be played: %s", found.sound, e)


async def _ask(session: AgiSession, rule: Rule, notice: str, invalid: Callable[[], Awaitable[None]]) -> Outcome:
    """Play the notice and collect the party's key, as the rule says."""
    if rule.mode == "implied":
        await session.stream_file(notice)
        return Outcome("implied", "notice-played", attempts=1)
    pressed = ""
    for attempt in range(1, rule.repeats + 2):
        digits, _timed_out = await session.get_data(notice, int(rule.timeout * 1000), 1)
        pressed += digits
        if digits == rule.allow_key:
            return Outcome("granted", "pressed-allow", pressed, attempt)
        if digits == rule.refuse_key:
            return Outcome("declined", "pressed-refuse", pressed, attempt)
        if digits:  # another key
            if rule.invalid == "refuse":
                return Outcome("declined", "invalid-key", pressed, attempt)
            await invalid()
            continue
        if rule.mode == "opt-out":
            return Outcome("implied", "no-objection", pressed, attempt)
    if rule.mode == "opt-out":
        return Outcome("implied", "no-objection", pressed, rule.repeats + 1)
    return Outcome("declined", "no-answer" if not pressed else "invalid-key", pressed, rule.repeats + 1)


class Asked:
    """Who is asked, under which rule, on which call."""

    __slots__ = ("caller_hmac", "dialled", "dialplan_tail", "did", "linkedid", "party", "rule", "starts_recording")

    def __init__(self, party: str, rule: Rule, linkedid: str, did: str, dialled: str, caller_hmac: str,
                 starts_recording: bool, dialplan_tail: bool = False):
        self.party = party  # ConsentBody.CALLER | ConsentBody.CALLEE
        self.rule = rule
        self.linkedid = linkedid
        self.did = did
        self.dialled = dialled
        self.caller_hmac = caller_hmac
        self.starts_recording = starts_recording  # False: a caller under an all-party rule (the callee decides last)
        # True: the dialplan raises the UserEvent and plays the confirmation after the
        # AGI returns (variables.DIALPLAN_TAIL); False: this route sends both itself.
        self.dialplan_tail = dialplan_tail


def dialplan_tail(session: AgiSession) -> bool:
    """Whether the dialplan that ran this AGI ends with the UserEvent and confirmation
    (``?tail=dialplan`` on the URL, variables.DIALPLAN_TAIL)."""
    return session.env.query.get(v.DIALPLAN_TAIL[0]) == v.DIALPLAN_TAIL[1]


async def linkedid_of(session: AgiSession, arg: int) -> str:
    """The call's linkedid: AGI argument ``arg`` (0-based) when the dialplan passes
    ``${CHANNEL(linkedid)}`` there (the generated one does: one command fewer per
    call), else asked of the channel; the channel's own uniqueid if neither says."""
    args = session.env.args
    given = args[arg] if len(args) > arg else ""
    return given or await session.get_variable("CHANNEL(linkedid)") or session.env.uniqueid


def notice_for(deps: ConsentDeps, rule: Rule) -> InstalledPrompt:
    """The installed notice for the rule's mode, language and keys; raises NoticeNotInstalled."""
    name = keyed_name(f"notice-{rule.mode}", rule.allow_key, rule.refuse_key)
    notice = deps.prompt(rule.prompt_language, name)
    if notice is None:
        raise NoticeNotInstalled(f"rule {rule.name!r}: {name} is not installed for language "
                                 f"{rule.prompt_language!r} or its fallbacks; not recorded "
                                 "(run `callvault prompts build` and `callvault prompts install`)")
    return notice


async def consent(session: AgiSession, deps: ConsentDeps) -> None:
    """The caller's consent. Arguments: the DID (inbound) and, for an outbound call,
    the number dialled (``AGI(.../consent,,${ARG1})`` from callvault-outbound); third,
    the channel's linkedid (``${CHANNEL(linkedid)}``), asked for when not given."""
    env = session.env
    dialled = env.args[1] if len(env.args) > 1 else ""
    did = "" if dialled else (env.args[0] if env.args else "") or env.query.get("did", "") or env.extension
    caller = env.callerid if env.callerid not in ("", "unknown") else ""
    rule = deps.policy.resolve(did=did, caller=caller, language=env.language, dialled=dialled)
    linkedid = await linkedid_of(session, 2)
    asked = Asked(ConsentBody.CALLER, rule, linkedid, did, dialled, deps.caller_hmac(caller),
                  starts_recording=not rule.all_parties, dialplan_tail=dialplan_tail(session))
    if caller and deps.objected is not None and await deps.objected(asked.caller_hmac):
        await refuse_objected(session, deps, asked)
        return
    await ask_party(session, deps, asked)


async def refuse_objected(session: AgiSession, deps: ConsentDeps, asked: Asked) -> None:
    """A standing objection: the ledger says so first, then the channel is told not to record."""
    env, rule, now = session.env, asked.rule, time.time()
    consent_id = new_id("c")
    logcontext.bind(linkedid=asked.linkedid, consent_id=consent_id)
    body = ConsentBody(consent_id=consent_id, uniqueid=env.uniqueid, linkedid=asked.linkedid, channel=env.channel,
                       caller_hmac=asked.caller_hmac, did=asked.did, rule=rule.name, jurisdiction=rule.jurisdiction,
                       mode=rule.mode, language=rule.prompt_language, notice="", started_at=now,
                       outcome=ConsentBody.OBJECTED, reason="standing-objection", record=False, ended_at=now,
                       party=asked.party, dialled=asked.dialled)
    await deps.append(ConsentBody.KIND, body.to_body(), call_id=asked.linkedid, recording_id=None)
    log.info("not recorded: a standing objection is in force for the caller (rule %s)", rule.name)
    await session.set_variables((v.CONSENT_ID, consent_id), (v.RULE, rule.name), (v.CONSENT, v.OBJECTED),
                                (v.RECORD, v.NO))
    if asked.dialplan_tail:
        return
    await session.exec("UserEvent", v.user_event(
        v.USER_EVENT, (v.EVENT_CONSENT_ID, consent_id), (v.EVENT_CONSENT, v.OBJECTED),
        (v.EVENT_RECORD, v.NO), (v.EVENT_RECORDING_ID, ""), (v.EVENT_RULE, rule.name)))


async def ask_party(session: AgiSession, deps: ConsentDeps, asked: Asked) -> Outcome | None:
    """Notice, answer, ledger entry, then (if it allows recording) MixMonitor on this
    channel, then the channel variables and the UserEvent. None: hung up during the notice."""
    env, rule = session.env, asked.rule
    started = time.time()
    consent_id = new_id("c")
    logcontext.bind(linkedid=asked.linkedid, consent_id=consent_id)  # this connection's task only
    notice = notice_for(deps, rule)
    keys = {} if rule.mode == "implied" else {"allow_key": rule.allow_key, "refuse_key": rule.refuse_key}

    def decided(**outcome: object) -> ConsentBody:
        return ConsentBody(consent_id=consent_id, uniqueid=env.uniqueid, linkedid=asked.linkedid,
                           channel=env.channel, caller_hmac=asked.caller_hmac, did=asked.did, rule=rule.name,
                           jurisdiction=rule.jurisdiction, mode=rule.mode, language=rule.prompt_language,
                           notice=notice.sound, started_at=started, notice_id=notice.name,
                           notice_language=notice.language, notice_version=notice.version,
                           notice_sha256=dict(notice.sha256), party=asked.party, dialled=asked.dialled,
                           **keys, **outcome)

    def invalid() -> Awaitable[None]:
        return play_optional(session, deps.prompt, rule.prompt_language, "invalid-choice")

    try:
        outcome = await _ask(session, rule, notice.sound, invalid)
    except AgiHangup:
        body = decided(outcome=ConsentBody.ABANDONED, reason="hangup-during-notice", record=False,
                       ended_at=time.time())
        await deps.append(ConsentBody.KIND, body.to_body(), call_id=asked.linkedid, recording_id=None)
        log.info("consent abandoned: the %s hung up during the notice", asked.party)
        return None
    record = outcome.record and asked.starts_recording
    recording_id = new_id("r") if record else None
    logcontext.bind(recording_id=recording_id)
    log.info("consent %s (%s) by the %s, rule %s", outcome.consent, outcome.reason, asked.party, rule.name)
    body = decided(outcome=outcome.consent, reason=outcome.reason, digits=outcome.digits,
                   attempts=outcome.attempts, record=record, recording_id=recording_id, ended_at=time.time())
    if recording_id is None:
        await deps.append(ConsentBody.KIND, body.to_body(), call_id=asked.linkedid, recording_id=None)
    else:
        stereo = deps.channels == "stereo"
        path = f"{deps.spool_dir.rstrip('/')}/{recording_file(recording_id, stereo)}"
        start = RecordingStart(body, path, rule, time.time())
        if deps.append_recording is not None:
            await deps.append_recording(start)
        else:
            await deps.append(ConsentBody.KIND, body.to_body(), call_id=asked.linkedid, recording_id=recording_id)
            await deps.on_recording(start)
        # The post-command runs in a shell: only our generated id goes into it.
        await session.exec("MixMonitor", f"{path},{'D' if stereo else ''},/bin/touch {done_marker(path)}")
    flag = v.YES if record else v.NO
    # The outcome is logged and in force; a missing confirmation sound must not
    # turn it into a fail-closed "error" while MixMonitor runs. A caller whose
    # "yes" waits for the called party's hears nothing yet.
    confirm = ("will-record" if record else "will-not-record") if record or not outcome.record else None
    recorded = [(v.RECORDING_ID, recording_id)] if recording_id else []
    if asked.dialplan_tail:
        found = None if confirm is None else optional_prompt(deps.prompt, rule.prompt_language, confirm)
        await session.set_variables(*recorded, (v.CONSENT_ID, consent_id), (v.RULE, rule.name),
                                    (v.CONSENT, outcome.consent), (v.RECORD, flag),
                                    (v.CONFIRM, found.sound if found is not None else ""))
        return outcome
    await session.set_variables(*recorded, (v.CONSENT_ID, consent_id), (v.RULE, rule.name),
                                (v.CONSENT, outcome.consent), (v.RECORD, flag))
    await session.exec("UserEvent", v.user_event(
        v.USER_EVENT, (v.EVENT_CONSENT_ID, consent_id), (v.EVENT_CONSENT, outcome.consent),
        (v.EVENT_RECORD, flag), (v.EVENT_RECORDING_ID, recording_id or ""), (v.EVENT_RULE, rule.name)))
    if confirm is not None:
        await play_optional(session, deps.prompt, rule.prompt_language, confirm)
    return outcome
