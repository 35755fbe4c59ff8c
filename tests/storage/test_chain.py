"""storage.chain: the ledger's hash chain as pure functions: the documented encoding
and test vector, canonical bodies, building entries, and offline verification of
an export (tampered, truncated, malformed)."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from ledgerhelpers import fill, independent_hash

from storage.chain import (
    GENESIS_HASH,
    canonical_json,
    entry_hash,
    format_ts,
    next_entry,
    prepare_body,
    verify_entries,
    verify_jsonl,
)
from storage.ledger import Ledger
from storage.sqlitedb import SqliteDatabase as Database


@pytest.fixture
def ledger(tmp_path):
    db = Database(tmp_path / "ledger.db")
    yield Ledger(db)
    db.close()


# -- encoding -----------------------------------------------------------------------


def test_documented_test_vector():
    body1 = canonical_json({"mode": "dtmf", "choice": "accept", "digits": "1"})
    assert body1 == '{"choice":"accept","digits":"1","mode":"dtmf"}'
    h1 = entry_hash(1, "2025-01-31T12:00:00.123Z", "consent", "1700000000.42", None, body1, GENESIS_HASH)
    assert h1 == "26a692561d217a5759abf9ad6c0372c18c8d7bf9749d084dc8c8b1c3bce4ff26"
    body2 = canonical_json({"actor": "supervisor:alice", "reason": "QA review"})
    h2 = entry_hash(2, "2025-01-31T12:05:10.004Z", "audit.play", None, "rec_7QF2", body2, h1)
    assert h2 == "34eb46bbc671c72ef2b7bd7bf0e87bbf09dd3a13bccaed6a1c57462d3dc23e9e"
    assert h1 == independent_hash(1, "2025-01-31T12:00:00.123Z", "consent", "1700000000.42", None, body1, GENESIS_HASH)


def test_encoding_is_unambiguous():
    base = (1, "2025-01-31T12:00:00.123Z", "consent", "ab", None, "{}", GENESIS_HASH)
    variants = {
        entry_hash(*base),
        entry_hash(1, base[1], "consent", "a", "b", "{}", GENESIS_HASH),  # field boundary moved
        entry_hash(1, base[1], "consent", "ab", "", "{}", GENESIS_HASH),  # "" is not null
        entry_hash(1, base[1], "consent", None, "ab", "{}", GENESIS_HASH),  # which id
        entry_hash(1, base[1], "consentab", None, None, "{}", GENESIS_HASH),
    }
    assert len(variants) == 5


def test_canonical_json_rules():
    assert canonical_json({"b": [1, 2.5, None], "a": "ü"}) == '{"a":"ü","b":[1,2.5,null]}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
    with pytest.raises(ValueError):
        canonical_json({1: "int key"})
    with pytest.raises(ValueError):
        canonical_json({"x": object()})
    with pytest.raises(TypeError):
        canonical_json(["not", "a", "dict"])


def test_next_entry_extends_a_head_and_verifies():
    ts = "2025-01-31T12:00:00.123Z"
    body = prepare_body("consent", {"choice": "accept"}, "1700000000.42", None)
    first = next_entry((0, GENESIS_HASH), ts, "consent", "1700000000.42", None, body)
    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert first.hash == entry_hash(1, ts, "consent", "1700000000.42", None, body, GENESIS_HASH)
    second = next_entry((first.seq, first.hash), ts, "audit.play", None, "rec-1", "{}")
    assert (second.seq, second.prev_hash) == (2, first.hash)
    result = verify_entries([first.to_record(), second.to_record()], expected_head=(2, second.hash))
    assert result.ok and result.head == (2, second.hash)


def test_prepare_body_and_format_ts():
    assert prepare_body("audit.play", {"b": 1, "a": 2}, None, "r") == '{"a":2,"b":1}'
    for kind in ("Consent", "audit..play", "", "x" * 65):
        with pytest.raises(ValueError):
            prepare_body(kind, {}, None, None)
    with pytest.raises(TypeError):
        prepare_body("consent", {}, 5, None)
    with pytest.raises(ValueError):
        prepare_body("consent", {"x": "y" * (64 * 1024)}, None, None)
    moment = datetime(2025, 1, 31, 14, 0, 0, 123999, tzinfo=timezone(timedelta(hours=2)))
    assert format_ts(moment) == "2025-01-31T12:00:00.123Z"


# -- export and offline verification ------------------------------------------------


def test_export_then_verify_offline(ledger):
    entries = fill(ledger, 30)
    ledger.append("audit.export", {"who": "officer", "note": "Zoë — DSAR"}, call_id=None)
    text = io.StringIO()
    head = ledger.export_jsonl(text)
    assert head == ledger.head() == (31, ledger.get(31).hash)
    lines = text.getvalue().splitlines()
    assert len(lines) == 31
    first = json.loads(lines[0])
    assert first == entries[0].to_record()
    assert verify_jsonl(io.StringIO(text.getvalue()), expected_head=head).ok

    binary = io.BytesIO()
    ledger.export_jsonl(binary)
    assert binary.getvalue() == text.getvalue().encode("utf-8")
    binary.seek(0)
    result = verify_jsonl(binary, expected_head=head)
    assert result.ok and result.checked == 31


def test_export_to_file_and_verify(tmp_path, ledger):
    fill(ledger, 5)
    path = tmp_path / "ledger.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        head = ledger.export_jsonl(f)
    with open(path, "rb") as f:
        assert verify_jsonl(f, expected_head=head).ok


def _exported(ledger, n=10):
    fill(ledger, n)
    buf = io.StringIO()
    head = ledger.export_jsonl(buf)
    return [json.loads(line) for line in buf.getvalue().splitlines()], head


def _verify(records, **kw):
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return verify_jsonl(io.StringIO(text), **kw)


def test_tampered_export_edited_body(ledger):
    records, _ = _exported(ledger)
    records[3]["body"] = '{"choice":"decline","n":4}'
    result = _verify(records)
    assert (result.ok, result.bad_seq) == (False, 4)


def test_tampered_export_deleted_line(ledger):
    records, head = _exported(ledger)
    del records[5]
    result = _verify(records, expected_head=head)
    assert (result.ok, result.bad_seq, result.checked) == (False, 6, 5)


def test_tampered_export_truncated_tail(ledger):
    records, head = _exported(ledger)
    assert _verify(records[:-2]).ok
    assert _verify(records[:-2], expected_head=head).bad_seq == 9


def test_tampered_export_swapped_lines(ledger):
    records, _ = _exported(ledger)
    records[2], records[3] = records[3], records[2]
    result = _verify(records)
    assert result.bad_seq == 3 and "missing" in result.reason


def test_tampered_export_rehashed_line(ledger):
    records, _ = _exported(ledger)
    r = records[4]
    r["body"] = "{}"
    r["hash"] = entry_hash(r["seq"], r["ts"], r["kind"], r["call_id"], r["recording_id"], "{}", r["prev_hash"])
    assert _verify(records).bad_seq == 6


def test_malformed_export_lines(ledger):
    records, _ = _exported(ledger, 3)
    good = "".join(json.dumps(r) + "\n" for r in records)
    bad_json = verify_jsonl(io.StringIO(good + "{not json\n"))
    assert bad_json.bad_seq == 4 and "line 4" in bad_json.reason
    extra = dict(records[0], extra=1)
    assert verify_jsonl(io.StringIO(json.dumps(extra) + "\n")).bad_seq == 1
    assert verify_jsonl(io.BytesIO(b"\xff\xfe\n")).bad_seq == 1
    empty = verify_jsonl(io.StringIO(""))
    assert empty.ok and empty.head == (0, GENESIS_HASH)
    assert not verify_jsonl(io.StringIO(""), expected_head=(1, "a" * 64)).ok
