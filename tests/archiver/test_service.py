"""The archiver service on the local store: intake, spool scan, workers, stop/resume."""

from __future__ import annotations

import asyncio
import time

import pytest
from waiting import until

from archiver.errors import SetupError
from archiver.retention import RetentionSweeper
from archiver.service import FIRST_LOOK, Archiver
from storage.errors import PermanentError

ACTIVE = ("pending", "encrypting", "uploading", "verifying")


def make_archiver(env, **kw) -> Archiver:
    kw.setdefault("scan_interval", 30.0)
    kw.setdefault("workers", 2)
    return Archiver(env.spool, catalog=env.catalog, ledger=env.ledger, pipeline=kw.pop("pipeline", env.pipeline),
                    sweeper=RetentionSweeper(env.catalog, env.ledger, env.archive()),
                    rule_retention={"za-opt-in": "default"}, **kw)


def states(env, rids):
    return [env.catalog.get(r).state for r in rids]


async def test_start_scan_queues_done_markers_and_archives(archive_env):
    env = archive_env
    rids = [env.recording(50_000, state="recording") for _ in range(5)]
    archiver = make_archiver(env)
    await archiver.start()
    try:
        await until(lambda: states(env, rids) == ["archived"] * 5, what="archived")
        await archiver.scan()
        stats = archiver.stats.as_dict()
        assert stats["running"] and stats["queue"] == {"archived": 5} and stats["backlog"] == 0
        assert stats["archived"] == 5 and stats["last_archive_at"] and stats["dead_letters"] == 0
        assert stats["spool_files"] == 0
    finally:
        await archiver.stop(5)
    assert not archiver.stats.running
    assert env.spool_files() == []


async def test_queue_figures_follow_a_drain_without_a_count_per_job(archive_env):
    """Counting the queue reads every active row: after each of a large backlog's jobs
    that is the backlog squared. Counted at most once a second, and when it runs dry."""
    env = archive_env
    rids = [env.recording(20_000) for _ in range(12)]
    counts = []
    count = env.catalog.queue_counts
    env.catalog.queue_counts = lambda: counts.append(time.monotonic()) or count()
    archiver = make_archiver(env)
    t0 = time.monotonic()
    await archiver.start()
    try:
        await until(lambda: states(env, rids) == ["archived"] * 12, what="archived")
        await until(lambda: archiver.stats.as_dict()["queue"] == {"archived": 12}, what="the figures to follow")
        took = time.monotonic() - t0
        assert archiver.stats.as_dict()["backlog"] == 0
    finally:
        await archiver.stop(5)
    # the start's scan, about one a second while draining, one when the queue ran dry
    assert len(counts) <= 2 + int(took) + 1 < 1 + 12, (counts, took)


async def test_recording_ended_queues_that_channel_and_wakes_a_worker(archive_env):
    env = archive_env
    rid = env.recording(state="recording", uniqueid="lab-abc-2", marker=False)
    other = env.recording(state="recording", uniqueid="lab-def-2", marker=False)
    archiver = make_archiver(env, scan_interval=3600)
    # Both are "being recorded": held open, so neither the start scan nor a worker takes them.
    with open(env.spool / f"{rid}.wav", "ab"), open(env.spool / f"{other}.wav", "ab"):
        await archiver.start()
        assert states(env, [rid, other]) == ["recording", "recording"]
        (env.spool / f"{rid}.wav.done").touch()
    try:
        assert await archiver.recording_ended(uniqueid="lab-abc-2") == 1
        await until(lambda: states(env, [rid]) == ["archived"], timeout=5, what="archived")
        assert await archiver.recording_ended(uniqueid="lab-abc-2") == 0  # idempotent
        assert env.catalog.get(other).state == "recording"  # no event for it, no scan yet
        assert await archiver.recording_ended(uniqueid="nobody") == 0
    finally:
        await archiver.stop(5)


async def test_hangup_before_the_marker_is_looked_at_once_it_should_be_there(archive_env):
    """MixMonitor touches the done marker a moment after the hang-up: a job looked at
    at once would be claimed and put back (two fsynced commits for nothing)."""
    env = archive_env
    rid = env.recording(state="recording", marker=False, uniqueid="lab-y-2")
    archiver = make_archiver(env, scan_interval=3600)
    await archiver.start()
    claimed = []
    claim = env.catalog.claim
    env.catalog.claim = lambda **kw: (rec := claim(**kw)) and claimed.append(rec.state) or rec
    try:
        t0 = time.time()
        assert await archiver.recording_ended(uniqueid="lab-y-2") == 1
        assert env.catalog.get(rid).next_try_at >= t0 + FIRST_LOOK  # not due yet
        await asyncio.sleep(FIRST_LOOK / 4)
        (env.spool / f"{rid}.wav.done").touch()  # the post-command ran
        await until(lambda: states(env, [rid]) == ["archived"], timeout=15, what="archived")
        assert time.time() - t0 >= FIRST_LOOK
        assert claimed == ["pending"], claimed  # claimed once, and archived then
    finally:
        await archiver.stop(5)
    # With the marker already there, a hang-up's job is due at once.
    rid = env.recording(state="recording", uniqueid="lab-z-2")
    await archiver.recording_ended(uniqueid="lab-z-2")
    assert env.catalog.get(rid).next_try_at == 0


async def test_file_still_open_after_the_first_look_waits_for_the_marker(archive_env):
    env = archive_env
    rid = env.recording(state="recording", marker=False, uniqueid="lab-x-2")
    archiver = make_archiver(env, scan_interval=3600)
    await archiver.start()
    try:
        with open(env.spool / f"{rid}.wav", "ab"):  # MixMonitor closes a moment after hangup
            t0 = time.time()
            assert await archiver.recording_ended(uniqueid="lab-x-2") == 1
            # a worker that finds the file still open puts the job back with a later look
            await until(lambda: env.catalog.get(rid).next_try_at > t0 + FIRST_LOOK + 0.1,
                        what="a worker to look at the open file", detail=lambda: env.catalog.get(rid))
            assert env.catalog.get(rid).state == "pending"
        (env.spool / f"{rid}.wav.done").touch()  # the post-command ran
        await until(lambda: states(env, [rid]) == ["archived"], timeout=15, what="archived")
    finally:
        await archiver.stop(5)


async def test_orphans_adopted_from_the_ledger_others_left_alone(archive_env):
    env = archive_env
    lost_row = env.recording(row=False)  # consent in the ledger, catalog row lost
    foreign = env.recording(row=False, consent=False)  # nothing knows this file
    archiver = make_archiver(env)
    await archiver.start()
    try:
        await until(lambda: env.catalog.search(state="archived") != [], what="adopted archive")
        rec = env.catalog.get(lost_row)
        assert rec.consent_state == "granted" and rec.rule == "za-opt-in" and rec.jurisdiction == "ZA"
        assert "archive.adopt" in env.kinds(lost_row)
        assert archiver.stats.unclaimed_files == 1
        assert f"{foreign}.wav" in env.spool_files()
        assert env.catalog.search(limit=10) == [rec]
    finally:
        await archiver.stop(5)


async def test_adopted_orphan_of_a_revoked_call_is_erased(archive_env):
    env = archive_env
    rid = env.recording(row=False, uniqueid="lab-rev-2")
    env.ledger.append("revoke", {"linkedid": "lab-rev-1", "recording_ids": [rid]}, call_id="lab-rev-1",
                      recording_id=rid)
    archiver = make_archiver(env)
    await archiver.start()
    try:
        await until(lambda: env.catalog.search(state="erased") != [], what="erased")
        assert env.spool_files() == [] and list(env.payload.list()) == []
    finally:
        await archiver.stop(5)


async def test_scan_removes_leftovers_of_a_crash_after_archiving(archive_env):
    env = archive_env
    crashed = []

    def hook(point, rec):
        if point == "verified" and not crashed:
            crashed.append(rec.recording_id)
            raise env.Crash()

    env.pipeline = env.make_pipeline(hook=hook)
    rid = env.recording()
    with pytest.raises(env.Crash):
        env.process(rid)
    assert env.catalog.get(rid).state == "archived" and f"{rid}.wav" in env.spool_files()
    stray = env.recording(state="archived", file=False, marker=True)  # a marker whose wav went
    archiver = make_archiver(env, pipeline=env.make_pipeline())
    await archiver.start()
    await archiver.stop(5)
    assert env.spool_files() == [] and env.work_files() == []
    assert env.versions(env.payload, env.payload_key(rid)) == 1
    assert env.catalog.get(stray).state == "archived"


async def test_row_without_file_long_after_start_becomes_a_dead_letter(archive_env):
    env = archive_env
    rid = env.recording(state="recording", file=False, marker=False)
    env.catalog.update(rid, started_at=time.time() - 3600)
    archiver = make_archiver(env)
    await archiver.start()
    try:
        await until(lambda: states(env, [rid]) == ["failed"], what="dead letter")
        # The worker marks the row failed, then refreshes its counts: the stats follow.
        await until(lambda: archiver.stats.as_dict()["dead_letters"] == 1, what="the stats to count it",
                    detail=archiver.stats.as_dict)
        await archiver.scan()
        assert archiver.stats.as_dict()["dead_letters"] == 1
    finally:
        await archiver.stop(5)


async def test_stop_abandons_mid_job_and_a_restart_resumes(archive_env):
    env = archive_env
    reached = asyncio.Event()
    loop = asyncio.get_running_loop()
    gate = []

    def hook(point, rec):
        if point == "uploading" and not gate:
            gate.append(1)
            loop.call_soon_threadsafe(reached.set)
            time.sleep(0.3)  # the upload is under way while stop() arrives

    env.pipeline = env.make_pipeline(hook=hook)
    rid = env.recording(2_000_000, state="recording")
    archiver = make_archiver(env, workers=1)
    await archiver.start()
    await asyncio.wait_for(reached.wait(), 10)
    await archiver.stop(10)
    rec = env.catalog.get(rid)
    assert rec.state == "uploading" and rec.lease_until == 0 and rec.attempts == 0
    assert list(env.payload.list()) == []  # the half-sent payload never became visible

    again = make_archiver(env, pipeline=env.make_pipeline())
    await again.start()
    try:
        await until(lambda: states(env, [rid]) == ["archived"], what="archived after restart")
    finally:
        await again.stop(5)
    assert env.versions(env.payload, env.payload_key(rid)) == 1


async def test_leases_of_a_killed_process_are_released_at_start(archive_env):
    env = archive_env
    rid = env.recording(state="uploading")
    env.catalog.update(rid, lease_until=time.time() + 3600, state="pending")
    archiver = make_archiver(env)
    await archiver.start()
    try:
        await until(lambda: states(env, [rid]) == ["archived"], what="archived")
    finally:
        await archiver.stop(5)


async def test_unusable_store_is_a_setup_error(archive_env):
    env = archive_env

    class Broken:
        def __init__(self, inner):
            self.inner, self.closed = inner, False

        def check_setup(self):
            raise PermanentError("bucket x does not have Object Lock enabled")

        def close(self):
            self.closed = True

        def __getattr__(self, name):
            return getattr(self.inner, name)

    broken = Broken(env.payload)
    archiver = make_archiver(env, pipeline=env.make_pipeline(archive=env.archive(payload=broken)))
    with pytest.raises(SetupError, match="does not have Object Lock enabled"):
        await archiver.start()
    # The Archive is the process's (shared with the web app and the CLI): whoever
    # built it closes it, never the archiver.
    assert not broken.closed
