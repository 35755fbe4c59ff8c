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
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from storage import logcontext
from storage.entries import ConsentBody
from storage.spool_names import done_marker, recording_file

from .. import variables as v
from ..errors import AgiHangup, CommandFailed, NoticeNotInstalled
from ..policy import ALLOW_DIGIT, REFUSE_DIGIT, Policy, Rule
from ..session import AgiSession

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


@dataclass(frozen=True)
class RecordingStart:
    consent: ConsentBody  # the entry that allows it: ``record`` and ``recording_id`` set
    path: str  # as Asterisk names it
    rule: Rule
    started_at: float


class AppendConsent(Protocol):
    """Appends ``start.consent`` AND registers its recording, in one durable step."""

    async def __call__(self, start: RecordingStart) -> object: ...


@dataclass(frozen=True)
class ConsentDeps:
    policy: Policy
    append: AppendEvent
    caller_hmac: Callable[[str], str]
    prompt: PromptResolver
    spool_dir: str  # as Asterisk names it
    on_recording: Callable[[RecordingStart], Awaitable[None]]
    # When set, a consent that allows recording is appended together with its
    # recording's registration (one transaction, one fsync) instead of ``append``
    # then ``on_recording``. Either way both are durable before MixMonitor starts.
    append_recording: AppendConsent | None = None
    # "stereo": the caller (audio read from the channel) and the other side (audio
    # written to it) on separate channels, MixMonitor's ``D`` option into a ``.raw``
    # file; "mono": both mixed into one WAV.
    channels: str = "mono"


@dataclass
class Outcome:
    consent: str  # granted | declined | implied | abandoned
    reason: str
    digits: str = ""
    attempts: int = 0

    @property
    def record(self) -> bool:
        return self.consent in ("granted", "implied")


def new_id(prefix: str) -> str:
    # Random, fixed alphabet: safe in file names, dialplan and shell post-commands.
    return f"{prefix}{secrets.token_hex(12)}"


async def play_optional(session: AgiSession, prompt: PromptResolver, language: str, name: str) -> None:
    """Play a prompt that is not a notice; one that is missing or fails is skipped
    (the outcome is decided and in force; a sound must not undo it)."""
    found = prompt(language, name)
    if found is None:
        log.warning("prompt %s is not installed for language %s; skipped", name, language)
        return
    try:
        await session.stream_file(found.sound)
    except CommandFailed as e:
        log.warning("prompt %s could not be played: %s", found.sound, e)


async def _ask(session: AgiSession, rule: Rule, notice: str, invalid: Callable[[], Awaitable[None]]) -> Outcome:
    """Play the notice and collect the caller's key, as the rule says."""
    if rule.mode == "implied":
        await session.stream_file(notice)
        return Outcome("implied", "notice-played", attempts=1)
    pressed = ""
    for attempt in range(1, rule.repeats + 2):
        digits, _timed_out = await session.get_data(notice, int(rule.timeout * 1000), 1)
        pressed += digits
        if digits == ALLOW_DIGIT:
            return Outcome("granted", "pressed-allow", pressed, attempt)
        if digits == REFUSE_DIGIT:
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


async def consent(session: AgiSession, deps: ConsentDeps) -> None:
    env = session.env
    started = time.time()
    consent_id = new_id("c")
    did = (env.args[0] if env.args else "") or env.query.get("did", "") or env.extension
    caller = env.callerid if env.callerid not in ("", "unknown") else ""
    rule = deps.policy.resolve(did=did, caller=caller, language=env.language)
    linkedid = await session.get_variable("CHANNEL(linkedid)") or env.uniqueid
    logcontext.bind(linkedid=linkedid, consent_id=consent_id)  # this connection's task only
    notice = deps.prompt(rule.prompt_language, f"notice-{rule.mode}")
    if notice is None:
        raise NoticeNotInstalled(f"rule {rule.name!r}: notice-{rule.mode} is not installed for language "
                                 f"{rule.prompt_language!r} or its fallbacks; not recorded "
                                 "(run `callvault prompts install`)")
    caller_hmac = deps.caller_hmac(caller)

    def decided(**outcome: object) -> ConsentBody:
        return ConsentBody(consent_id=consent_id, uniqueid=env.uniqueid, linkedid=linkedid, channel=env.channel,
                           caller_hmac=caller_hmac, did=did, rule=rule.name, jurisdiction=rule.jurisdiction,
                           mode=rule.mode, language=rule.prompt_language, notice=notice.sound, started_at=started,
                           notice_id=notice.name, notice_language=notice.language, notice_version=notice.version,
                           notice_sha256=dict(notice.sha256), **outcome)

    def invalid() -> Awaitable[None]:
        return play_optional(session, deps.prompt, rule.prompt_language, "invalid-choice")

    try:
        outcome = await _ask(session, rule, notice.sound, invalid)
    except AgiHangup:
        body = decided(outcome=ConsentBody.ABANDONED, reason="hangup-during-notice", record=False,
                       ended_at=time.time())
        await deps.append(ConsentBody.KIND, body.to_body(), call_id=linkedid, recording_id=None)
        log.info("consent abandoned: hung up during the notice")
        return
    recording_id = new_id("r") if outcome.record else None
    logcontext.bind(recording_id=recording_id)
    log.info("consent %s (%s) by rule %s", outcome.consent, outcome.reason, rule.name)
    body = decided(outcome=outcome.consent, reason=outcome.reason, digits=outcome.digits,
                   attempts=outcome.attempts, record=outcome.record, recording_id=recording_id,
                   ended_at=time.time())
    if recording_id is None:
        await deps.append(ConsentBody.KIND, body.to_body(), call_id=linkedid, recording_id=None)
    else:
        stereo = deps.channels == "stereo"
        path = f"{deps.spool_dir.rstrip('/')}/{recording_file(recording_id, stereo)}"
        start = RecordingStart(body, path, rule, time.time())
        if deps.append_recording is not None:
            await deps.append_recording(start)
        else:
            await deps.append(ConsentBody.KIND, body.to_body(), call_id=linkedid, recording_id=recording_id)
            await deps.on_recording(start)
        # The post-command runs in a shell: only our generated id goes into it.
        await session.exec("MixMonitor", f"{path},{'D' if stereo else ''},/bin/touch {done_marker(path)}")
        await session.set_variable(v.RECORDING_ID, recording_id)
    await session.set_variable(v.CONSENT_ID, consent_id)
    await session.set_variable(v.RULE, rule.name)
    await session.set_variable(v.CONSENT, outcome.consent)
    record = v.YES if outcome.record else v.NO
    await session.set_variable(v.RECORD, record)
    await session.exec("UserEvent", v.user_event(
        v.USER_EVENT, (v.EVENT_CONSENT_ID, consent_id), (v.EVENT_CONSENT, outcome.consent),
        (v.EVENT_RECORD, record), (v.EVENT_RECORDING_ID, recording_id or ""), (v.EVENT_RULE, rule.name)))
    # The outcome is logged and in force; a missing confirmation sound must not
    # turn it into a fail-closed "error" while MixMonitor runs.
    await play_optional(session, deps.prompt, rule.prompt_language,
                        "will-record" if outcome.record else "will-not-record")
