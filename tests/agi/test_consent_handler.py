"""The consent and revoke handlers against a scripted channel: the ledger bodies,
MixMonitor's arguments and the UserEvent are exactly what they were before the typed
contracts (tests/support/captured_bodies.py) plus the notice's proof and who answered
with which keys, and the catalog row is built from the consent."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import pytest
from captured_bodies import ABANDONED, DECLINED, GRANTED, HMAC, IMPLIED, REVOKE

import agi.handlers.consent as consent_mod
import agi.handlers.revoke as revoke_mod
from agi.errors import AgiHangup, NoticeNotInstalled
from agi.interface import AgiSession
from agi.policy import Policy, Rule
from storage.catalog import Recording
from storage.chain import canonical_json
from storage.spool_names import RECORDING_ID_RE

SPOOL = "/var/spool/asterisk/callvault"
HASHES = {"alaw": "a1" * 32, "ulaw": "u1" * 32}


def installed(lang, name):
    return SimpleNamespace(sound=f"callvault/{lang}/{name}", name=name, language=lang,
                           version="text-sha256:" + "7e" * 32, sha256=HASHES)


def with_notice(captured: str) -> str:
    """A captured body as written now: the same keys and values, plus the notice's proof,
    the party (the caller) and the keys the notice offered (every captured mode asks for one)."""
    body = json.loads(captured)
    name = body["notice"].rsplit("/", 1)[1]
    return canonical_json({**body, "notice_id": name, "notice_language": "en",
                           "notice_version": "text-sha256:" + "7e" * 32, "notice_sha256": HASHES,
                           "party": "caller", "allow_key": "1", "refuse_key": "2"})


class Channel:
    """Answers like Asterisk would; the caller presses ``digits`` (or hangs up)."""

    def __init__(self, digits: str = "", *, hang_up: bool = False):
        self.env = SimpleNamespace(args=["27215550100"], query={}, extension="s", callerid="27215550123",
                                   language="en", uniqueid="1795329357.7", channel="Local/100@lab-0001;2")
        self.digits, self.hang_up, self.execs, self.vars = digits, hang_up, [], {}

    async def get_variable(self, name):
        return "1795329357.6"

    async def get_data(self, prompt, timeout_ms, max_digits):
        if self.hang_up:
            raise AgiHangup("caller hung up")
        return self.digits, not self.digits

    async def stream_file(self, name, escape_digits=""):
        return None, 0

    async def exec(self, app, args=""):
        if app == "MSet":  # what Asterisk's MSet does with plain values
            self.vars.update(pair.split("=", 1) for pair in args.split(","))
        else:
            self.execs.append((app, args))
        return 0

    async def set_variable(self, name, value):
        self.vars[name] = value

    set_variables = AgiSession.set_variables


@pytest.fixture
def fixed(monkeypatch):
    """The clock and ids the captured bodies were written with; returns the calls' ledger."""
    clock = itertools.count(1700000000)
    fake_time = SimpleNamespace(time=lambda: float(next(clock)) + 0.25)
    ids = itertools.count(1)
    monkeypatch.setattr(consent_mod, "time", fake_time)
    monkeypatch.setattr(revoke_mod, "time", fake_time)
    monkeypatch.setattr(consent_mod, "new_id", lambda prefix: f"{prefix}{next(ids):024x}")
    return []


def deps(ledger: list, mode: str, starts: list) -> consent_mod.ConsentDeps:
    async def append(kind, body, *, call_id=None, recording_id=None):
        ledger.append((kind, canonical_json(body), call_id, recording_id))

    async def on_recording(start):
        starts.append(start)

    return consent_mod.ConsentDeps(
        policy=Policy((Rule("za", mode=mode, repeats=0, retention="short"),)), append=append,
        caller_hmac=lambda number: HMAC, prompt=installed,
        spool_dir=SPOOL + "/", on_recording=on_recording)


async def test_consent_writes_the_bodies_and_commands_it_always_did(fixed):
    ledger, starts, channels = fixed, [], []
    for digits, hang_up, mode in (("1", False, "opt-in"), ("2", False, "opt-in"), ("", True, "opt-in"),
                                  ("", False, "opt-out")):
        channels.append(Channel(digits, hang_up=hang_up))
        await consent_mod.consent(channels[-1], deps(ledger, mode, starts))
    granted, implied = "r000000000000000000000002", "r000000000000000000000006"
    assert ledger == [("consent", with_notice(GRANTED), "1795329357.6", granted),
                      ("consent", with_notice(DECLINED), "1795329357.6", None),
                      ("consent", with_notice(ABANDONED), "1795329357.6", None),
                      ("consent", with_notice(IMPLIED), "1795329357.6", implied)]
    assert channels[0].execs == [
        ("MixMonitor", f"{SPOOL}/{granted}.wav,,/bin/touch {SPOOL}/{granted}.wav.done"),
        ("UserEvent", (f"CallvaultConsent,ConsentId: c000000000000000000000001,Consent: granted,Record: yes,"
                      f"RecordingId: {granted},Rule: za"))]
    assert channels[1].execs == [("UserEvent", ("CallvaultConsent,ConsentId: c000000000000000000000003,"
                                               "Consent: declined,Record: no,RecordingId: ,Rule: za"))]
    assert channels[1].vars == {"CALLVAULT_CONSENT_ID": "c000000000000000000000003", "CALLVAULT_RULE": "za",
                                "CALLVAULT_CONSENT": "declined", "CALLVAULT_RECORD": "no"}
    assert channels[0].vars == {"CALLVAULT_RECORDING_ID": granted, "CALLVAULT_CONSENT_ID": "c000000000000000000000001",
                                "CALLVAULT_RULE": "za", "CALLVAULT_CONSENT": "granted", "CALLVAULT_RECORD": "yes"}
    assert channels[2].execs == [] and channels[2].vars == {}
    assert [s.consent.recording_id for s in starts] == [granted, implied]
    assert [s.path for s in starts] == [f"{SPOOL}/{granted}.wav", f"{SPOOL}/{implied}.wav"]

    row = Recording.from_consent(starts[1].consent, spool_path=f"/host/spool/{implied}.wav",
                                 retention_class=starts[1].rule.retention, consent_state="granted",
                                 started_at=starts[1].started_at)
    assert row == Recording(recording_id=implied, consent_id="c000000000000000000000005", uniqueid="1795329357.7",
                            linkedid="1795329357.6", channel="Local/100@lab-0001;2",
                            spool_path=f"/host/spool/{implied}.wav", caller_hmac=HMAC, did="27215550100", agent="",
                            rule="za", jurisdiction="ZA", retention_class="short", consent_state="granted",
                            started_at=starts[1].started_at)


async def test_the_linkedid_argument_spares_the_get_variable_and_the_old_dialplan_still_works(fixed):
    asked = []

    class Given(Channel):
        async def get_variable(self, name):
            asked.append(name)
            return "1795329357.6"

    given, old = Given("2"), Given("2")
    given.env.args = ["27215550100", "", "1795329357.9"]  # AGI(.../consent,${ARG1},,${CHANNEL(linkedid)})
    await consent_mod.consent(given, deps(fixed, "opt-in", []))
    assert asked == [] and fixed[-1][2] == "1795329357.9"
    await consent_mod.consent(old, deps(fixed, "opt-in", []))  # AGI(.../consent,${ARG1})
    assert asked == ["CHANNEL(linkedid)"] and fixed[-1][2] == "1795329357.6"


async def test_with_the_dialplan_tail_the_route_names_the_confirmation_and_sends_no_userevent(fixed):
    """``consent?tail=dialplan`` (the generated contexts): the same ledger entries, and
    the route leaves the UserEvent and the confirmation to the dialplan, naming the
    sound in CALLVAULT_CONFIRM (empty when it is not installed)."""
    plays, played_by_old = [], []

    class Tail(Channel):
        async def stream_file(self, name, escape_digits=""):
            plays.append(name)
            return None, 0

    granted, declined, old = Tail("1"), Tail("2"), Tail("1")
    for channel in (granted, declined):
        channel.env.query = {"tail": "dialplan"}
        await consent_mod.consent(channel, deps(fixed, "opt-in", []))
    await consent_mod.consent(old, deps(fixed, "opt-in", []))
    played_by_old, plays[:] = plays[:], []
    rid = "r000000000000000000000002"
    assert [e[0] for e in granted.execs] == ["MixMonitor"] and declined.execs == [] and plays == []
    assert granted.vars == {"CALLVAULT_RECORDING_ID": rid, "CALLVAULT_CONSENT_ID": "c000000000000000000000001",
                            "CALLVAULT_RULE": "za", "CALLVAULT_CONSENT": "granted", "CALLVAULT_RECORD": "yes",
                            "CALLVAULT_CONFIRM": "callvault/en/will-record"}
    assert declined.vars["CALLVAULT_CONFIRM"] == "callvault/en/will-not-record"
    assert [e[0] for e in old.execs] == ["MixMonitor", "UserEvent"] and played_by_old == ["callvault/en/will-record"]
    assert "CALLVAULT_CONFIRM" not in old.vars
    assert [canonical for _, canonical, _, _ in fixed][:2] == [with_notice(GRANTED), with_notice(DECLINED)]

    missing = Tail("1")
    missing.env.query = {"tail": "dialplan"}
    d = deps(fixed, "opt-in", [])
    d = consent_mod.ConsentDeps(**{**d.__dict__,
                                   "prompt": lambda lang, name: installed(lang, name) if name.startswith("notice")
                                   else None})
    await consent_mod.consent(missing, d)
    assert missing.vars["CALLVAULT_CONFIRM"] == "" and missing.vars["CALLVAULT_RECORD"] == "yes"


async def test_a_rule_name_mset_would_mangle_is_set_one_variable_at_a_time(fixed):
    class Counting(Channel):
        async def set_variable(self, name, value):
            self.execs.append(("SET VARIABLE", name))
            self.vars[name] = value

    channel, ledger = Counting("2"), fixed
    rule = Rule("za, \"north\"", mode="opt-in", repeats=0)
    d = deps(ledger, "opt-in", [])
    await consent_mod.consent(channel, consent_mod.ConsentDeps(**{**d.__dict__, "policy": Policy((rule,))}))
    assert channel.vars["CALLVAULT_RULE"] == 'za, "north"'
    assert [e for e in channel.execs if e[0] == "SET VARIABLE"] == [
        ("SET VARIABLE", n) for n in ("CALLVAULT_CONSENT_ID", "CALLVAULT_RULE", "CALLVAULT_CONSENT", "CALLVAULT_RECORD")]


async def test_a_failed_confirmation_is_logged_with_the_call_ids_not_the_raw_uniqueid(fixed, caplog):
    """The log line names the call by the ids every other line of it carries (linkedid,
    consent_id, recording_id, bound for the call), never the peer's agi_uniqueid text."""
    from agi.errors import CommandFailed
    from appliance.logs import CallContext

    class NoConfirmation(Channel):
        async def stream_file(self, name, escape_digits=""):
            raise CommandFailed("STREAM FILE", "sound file missing")

    channel = NoConfirmation("1")
    channel.env.uniqueid = "1795329357.7<caller 27215550123>"
    caplog.handler.addFilter(CallContext())
    await consent_mod.consent(channel, deps(fixed, "opt-in", []))
    [record] = [r for r in caplog.records if "could not be played" in r.getMessage()]
    assert "1795329357.7" not in record.getMessage() and "27215550123" not in record.getMessage()
    assert record.call_ids == {"linkedid": "1795329357.6", "consent_id": "c000000000000000000000001",
                               "recording_id": "r000000000000000000000002"}


async def test_notice_not_installed_fails_before_anything_is_played_or_written(fixed):
    channel, starts = Channel("1"), []
    d = deps(fixed, "implied", starts)
    d = consent_mod.ConsentDeps(**{**d.__dict__, "prompt": lambda lang, name: None})
    with pytest.raises(NoticeNotInstalled, match="rule 'za': notice-implied is not installed for language 'en'"):
        await consent_mod.consent(channel, d)
    assert fixed == [] and starts == [] and channel.execs == [] and channel.vars == {}


async def test_missing_confirmation_is_skipped_and_the_outcome_stands(fixed):
    channel, starts = Channel("1"), []
    d = deps(fixed, "opt-in", starts)
    d = consent_mod.ConsentDeps(**{**d.__dict__,
                                   "prompt": lambda lang, name: installed(lang, name) if name.startswith("notice")
                                   else None})
    await consent_mod.consent(channel, d)
    assert channel.vars["CALLVAULT_RECORD"] == "yes" and len(starts) == 1


def test_generated_recording_ids_have_the_shape_the_archiver_adopts():
    assert RECORDING_ID_RE.fullmatch(consent_mod.new_id("r"))


async def test_revoke_writes_the_body_and_event_it_always_did(fixed):
    rid = "r000000000000000000000001"
    rec = SimpleNamespace(recording_id=rid, state="recording", erase_requested=0, channel="PJSIP/1-1")
    catalog = SimpleNamespace(by_linkedid=lambda linkedid: [rec], update=lambda *a, **k: None)
    ledger = fixed

    async def append(kind, body, *, call_id=None, recording_id=None):
        ledger.append((kind, canonical_json(body), call_id, recording_id))

    async def stop(channel):
        return True

    for _ in range(10):  # the captured revoke came after the four consent calls' clock readings
        consent_mod.time.time()
    channel = Channel()
    await revoke_mod.revoke(channel, revoke_mod.RevokeDeps(catalog=catalog, append=append, stop_mixmonitor=stop,
                                                           prompt=installed))
    assert ledger == [("revoke", REVOKE, "1795329357.6", rid)]
    assert channel.execs == [("UserEvent", f"CallvaultConsent,Consent: revoked,Record: no,RecordingId: {rid}")]
    assert channel.vars == {"CALLVAULT_CONSENT": "revoked", "CALLVAULT_RECORD": "no"}
