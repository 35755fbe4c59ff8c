"""The ledger body contracts: round trips, and bodies as the handlers wrote them
before the contracts existed (so existing ledgers still read, and new entries hash
the same)."""

from __future__ import annotations

import json

from hypothesis import given, strategies as st

from storage.entries import ConsentBody, PauseBody, RevokeBody
from storage.chain import canonical_json

from captured_bodies import ABANDONED, DECLINED, GRANTED, HMAC, IMPLIED, PAUSE, REVOKE


def test_captured_consent_bodies_parse_and_reencode_byte_identically():
    for text in (GRANTED, DECLINED, ABANDONED, IMPLIED):
        body = ConsentBody.from_body(json.loads(text))
        assert canonical_json(body.to_body()) == text
    granted = ConsentBody.from_body(json.loads(GRANTED))
    assert granted == ConsentBody(
        consent_id="c000000000000000000000001", uniqueid="1795329357.7", linkedid="1795329357.6",
        channel="Local/100@lab-0001;2", caller_hmac=HMAC, did="27215550100", rule="za", jurisdiction="ZA",
        mode="opt-in", language="en", notice="callvault/en/notice-opt-in", started_at=1700000000.25,
        outcome="granted", reason="pressed-allow", record=True, ended_at=1700000001.25, digits="1", attempts=1,
        recording_id="r000000000000000000000002")
    declined = ConsentBody.from_body(json.loads(DECLINED))
    assert (declined.record, declined.recording_id, declined.answered) == (False, None, True)
    abandoned = ConsentBody.from_body(json.loads(ABANDONED))
    assert (abandoned.answered, abandoned.digits, abandoned.attempts, abandoned.recording_id) == (False, "", 0, None)
    assert set(abandoned.to_body()) == set(json.loads(ABANDONED))  # no digits, attempts, recording_id


def test_captured_revoke_and_pause_bodies_parse_and_reencode_byte_identically():
    revoke = RevokeBody.from_body(json.loads(REVOKE))
    assert revoke == RevokeBody(linkedid="1795329357.6", by_channel="Local/100@lab-0001;2", at=1700000010.25,
                                recording_ids=("r000000000000000000000001",),
                                stopped=("r000000000000000000000001",), not_stopped=())
    assert canonical_json(revoke.to_body()) == REVOKE
    pause = PauseBody.from_body(json.loads(PAUSE))
    assert pause == PauseBody("r1", "PJSIP/1001-00000001", 1700000011.5, "alice", "")
    assert canonical_json(pause.to_body()) == PAUSE
    assert (PauseBody.kind(True), PauseBody.kind(False)) == ("pause", "resume")


def test_partial_bodies_read_leniently_as_the_readers_always_did():
    # Hand-written or older entries (tests write such): missing keys read as empty values.
    consent = ConsentBody.from_body({"consent_id": "c1", "outcome": "granted", "record": True,
                                     "recording_id": "r1", "unknown_key": 5})
    assert (consent.consent_id, consent.outcome, consent.record, consent.recording_id) == ("c1", "granted", True, "r1")
    assert (consent.linkedid, consent.did, consent.started_at, consent.attempts) == ("", "", 0.0, 0)
    assert ConsentBody.from_body({}).record is False and ConsentBody.from_body({}).recording_id is None
    revoke = RevokeBody.from_body({"linkedid": "l1", "recording_ids": ["r1", "r2"]})
    assert revoke.recording_ids == ("r1", "r2") and revoke.stopped == revoke.not_stopped == ()
    assert RevokeBody.from_body({}).recording_ids == ()


_text = st.text(max_size=20)
_time = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)
_ids = st.lists(st.text(min_size=1, max_size=12), max_size=4).map(tuple)


def _consent(answered: bool):
    answer = dict(outcome=st.sampled_from(["granted", "declined", "implied"]), digits=_text,
                  attempts=st.integers(0, 4), recording_id=st.none() | st.text(min_size=1, max_size=26))
    if not answered:
        answer = dict(outcome=st.just("abandoned"))  # digits, attempts, recording_id: the defaults
    # Entries from before the notice's proof have none of its fields; newer ones have all four.
    proof = st.just({}) | st.fixed_dictionaries({
        "notice_id": st.text(min_size=1, max_size=20), "notice_language": _text, "notice_version": _text,
        "notice_sha256": st.dictionaries(st.sampled_from(["wav", "ulaw", "alaw", "g722", "gsm", "sln16"]), _text)})
    return proof.flatmap(lambda notice: st.builds(
        ConsentBody, consent_id=_text, uniqueid=_text, linkedid=_text, channel=_text, caller_hmac=_text,
        did=_text, rule=_text, jurisdiction=_text, mode=_text, language=_text, notice=_text, started_at=_time,
        reason=_text, record=st.booleans(), ended_at=_time, **answer, **{k: st.just(v) for k, v in notice.items()}))


def _through_ledger(body: dict) -> dict:
    return json.loads(canonical_json(body))


@given(_consent(True) | _consent(False))
def test_consent_round_trip(x):
    assert ConsentBody.from_body(x.to_body()) == x
    assert ConsentBody.from_body(_through_ledger(x.to_body())) == x


@given(st.builds(RevokeBody, linkedid=_text, by_channel=_text, at=_time, recording_ids=_ids, stopped=_ids,
                 not_stopped=_ids, action=st.just(RevokeBody.STOP_AND_ERASE)))
def test_revoke_round_trip(x):
    assert RevokeBody.from_body(x.to_body()) == x
    assert RevokeBody.from_body(_through_ledger(x.to_body())) == x


@given(st.builds(PauseBody, recording_id=_text, channel=_text, at=_time, actor=_text,
                 trigger=st.sampled_from(PauseBody.TRIGGERS)))
def test_pause_round_trip(x):
    assert PauseBody.from_body(_through_ledger(x.to_body())) == x
