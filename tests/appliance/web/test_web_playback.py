"""Playback, download, legal hold and metrics against recordings stored in the lab's RGW.

Byte ranges come back exactly as the WAV's bytes; a grant belongs to one session; the
audit entry exists before the file key is unwrapped; the age download is the
original file; an officer's legal hold reaches the stored object.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, strategies as st

from appliance.keys import AppKeys as K
from appliance.web.retrieval import parse_range
from archiver import archive
from appliance.web.state import WebKeys as W
from storage.age import CHUNK_SIZE, Decryptor

pytestmark = [pytest.mark.asterisk, pytest.mark.s3]


@given(size=st.integers(0, 10_000), a=st.integers(0, 12_000), b=st.integers(0, 12_000),
       form=st.sampled_from(["a-b", "a-", "-b", "junk"]))
def test_parse_range_agrees_with_slicing(size, a, b, form):
    header = {"a-b": f"bytes={a}-{b}", "a-": f"bytes={a}-", "-b": f"bytes=-{b}", "junk": f"items={a}-{b}"}[form]
    data = bytes(range(256)) * 40
    data = data[:size]
    try:
        got = parse_range(header, size)
    except ValueError:
        # 416 only when nothing of the body can be sent.
        assert form != "junk" and (size == 0 or (form == "-b" and b == 0) or (form != "-b" and a >= size)
                                   or (form == "a-b" and b < a))
        return
    if got is None:
        assert form == "junk"
        return
    start, end = got
    expected = {"a-b": data[a:b + 1], "a-": data[a:], "-b": data[-b:] if b else b""}[form]
    assert data[start:end + 1] == expected


async def grant(client, rid: str, purpose: str = "play", fmt: str = "wav") -> str:
    async with client.post(f"/api/recordings/{rid}/access", json={"purpose": purpose, "format": fmt,
                                                                   "reason": "quality review"},
                           headers={"X-CSRF-Token": client.csrf}) as r:
        assert r.status == 201, await r.text()
        return (await r.json())["url"]


async def test_ranges_are_the_wav_bytes_and_grants_belong_to_one_session(webapp, monkeypatch):
    async with webapp() as h:
        rid, wav_path = await asyncio.to_thread(h.recording, 70)  # 1.12 MB: 18 STREAM chunks
        wav = wav_path.read_bytes()
        size = len(wav)
        sam = await h.client("sam")

        # The key is used only after the audit entry is committed.
        ledger = h.app[K.ledger]
        unwrapped = []

        class Checked(Decryptor):
            def __init__(self, header, identities):
                entries = ledger.find(recording_id=rid, kind="audit.play")
                assert entries and entries[-1].data["reason"] == "quality review"
                unwrapped.append(entries[-1].seq)
                super().__init__(header, identities)

        monkeypatch.setattr(archive, "Decryptor", Checked)  # where the Archive unwraps the key
        async with sam.get(f"/api/recordings/{rid}/audio") as r:
            assert r.status == 403  # no grant yet, and no key touched
        assert unwrapped == []
        url = await grant(sam, rid)

        cases = [("bytes=0-43", 0, 43), (f"bytes={CHUNK_SIZE - 10}-{CHUNK_SIZE + 9}", CHUNK_SIZE - 10, CHUNK_SIZE + 9),
                 ("bytes=-100", size - 100, size - 1), (f"bytes={size - 5}-", size - 5, size - 1),
                 (f"bytes={5 * CHUNK_SIZE}-{size + 1000}", 5 * CHUNK_SIZE, size - 1)]
        for header, start, end in cases:
            async with sam.get(url, headers={"Range": header}) as r:
                assert r.status == 206, header
                assert r.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
                assert await r.read() == wav[start:end + 1], header
        async with sam.get(url, headers={"Range": "bytes=0-"}) as r:
            body = await r.read()
            assert r.status == 206 and body == wav[:len(body)] and r.headers["Content-Type"] == "audio/wav"
        async with sam.get(url) as r:
            assert r.status == 200 and await r.read() == wav
        async with sam.get(url, headers={"Range": f"bytes={size}-"}) as r:
            assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{size}"
        async with sam.head(url) as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) == size
        assert len(set(unwrapped)) == 1  # one unwrap for the grant, then the cached key

        # The same user in another session holds no grant there.
        sam2 = await h.client("sam")
        async with sam2.get(url) as r:
            assert r.status == 403
        # A download needs its own grant, per format.
        async with sam.get(f"/api/recordings/{rid}/download?format=wav") as r:
            assert r.status == 403


async def test_downloads_wav_and_original_age_file(webapp, tmp_path):
    async with webapp() as h:
        rid, wav_path = await asyncio.to_thread(h.recording, 10)
        olga = await h.client("olga")
        url = await grant(olga, rid, "download", "wav")
        async with olga.get(url) as r:
            assert r.headers["Content-Disposition"] == f'attachment; filename="{rid}.wav"'
            assert await r.read() == wav_path.read_bytes()
        url = await grant(olga, rid, "download", "age")
        async with olga.get(url) as r:
            age_file = await r.read()
            assert r.headers["Content-Disposition"] == f'attachment; filename="{rid}.age"'
        (tmp_path / "x.age").write_bytes(age_file)
        proc = await asyncio.create_subprocess_exec("/usr/bin/age", "-d", "-i", str(h.tmp / "identity.txt"),
                                                    str(tmp_path / "x.age"), stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        assert proc.returncode == 0 and out == wav_path.read_bytes()
        kinds = [(e.kind, e.data["format"]) for e in h.app[K.ledger].find(recording_id=rid)]
        assert kinds == [("audit.download", "wav"), ("audit.download", "age")]


async def test_officer_places_a_legal_hold_on_the_stored_object(webapp):
    async with webapp() as h:
        rid, _ = await asyncio.to_thread(h.recording, 5)
        sam, olga = await h.client("sam"), await h.client("olga")
        body = {"on": True, "reason": "litigation hold, matter 2026-117"}
        async with sam.post(f"/api/recordings/{rid}/legal-hold", json=body, headers={"X-CSRF-Token": sam.csrf}) as r:
            assert r.status == 403  # supervisors play; officers hold
        async with olga.post(f"/api/recordings/{rid}/legal-hold", json={"on": True},
                             headers={"X-CSRF-Token": olga.csrf}) as r:
            assert r.status == 400  # a reason is required
        async with olga.post(f"/api/recordings/{rid}/legal-hold", json=body, headers={"X-CSRF-Token": olga.csrf}) as r:
            assert r.status == 200 and (await r.json())["legal_hold"] is True
        rec = h.app[K.catalog].get(rid)
        payload = h.app[K.archive].payload
        assert rec.legal_hold == 1 and payload.head(rec.object_key, rec.version_id).legal_hold
        kinds = [e.kind for e in h.app[K.ledger].find(recording_id=rid)]
        assert kinds == ["audit.legal_hold", "legal_hold.set"]
        async with olga.post(f"/api/recordings/{rid}/legal-hold", json={**body, "on": False},
                             headers={"X-CSRF-Token": olga.csrf}) as r:
            assert r.status == 200 and (await r.json())["legal_hold"] is False
        assert not payload.head(rec.object_key, rec.version_id).legal_hold


async def test_metrics_expose_calls_consent_latency_queue_and_failures(webapp):
    from agi.ami import AmiEvent

    async with webapp() as h:
        await asyncio.to_thread(h.recording, 3)  # archived 5 s after it ended
        failed, _ = await asyncio.to_thread(h.recording, 3)
        h.app[K.catalog].update(failed, state="failed", last_error="S3 said no")
        h.app[W.live].handle(AmiEvent("UserEvent", {"UserEvent": "CallvaultConsent", "Uniqueid": "m.1",
                                                    "Linkedid": "m.1", "Consent": "declined", "Record": "no"}))
        anon = await h.client()
        async with anon.get("/metrics") as r:
            text = await r.text()
            assert r.headers["Content-Type"].startswith("text/plain")
        lines = set(text.splitlines())
        assert "callvault_calls_total 1.0" in lines
        assert 'callvault_consent_outcomes_total{outcome="declined"} 1.0' in lines
        assert 'callvault_archive_latency_seconds_bucket{le="2.0"} 0.0' in lines
        assert 'callvault_archive_latency_seconds_bucket{le="5.0"} 2.0' in lines
        assert "callvault_archive_latency_seconds_count 2.0" in lines
        assert 'callvault_archive_queue_depth{state="failed"} 1.0' in lines
        assert "callvault_archive_dead_letters 1.0" in lines and "callvault_ami_connected 1.0" in lines
        # A second scrape adds nothing already counted.
        async with anon.get("/metrics") as r:
            assert "callvault_archive_latency_seconds_count 2.0" in (await r.text()).splitlines()
