"""The node registry's heartbeat: an unchanged row is not written durably on every beat.

A beat builds the row every HEARTBEAT seconds; it writes (one durable transaction) at
start, when the row changes (AMI state, queue, a spool free-space move of SPOOL_STEP or
more) and otherwise every REWRITE seconds, well inside DOWN_AFTER.
"""

from __future__ import annotations

import time

from aiohttp import web

from appliance import config as cfg
from appliance.cluster import REWRITE, Heartbeat
from appliance.keys import AppKeys as K
from storage.catalog import Catalog, Recording
from storage.dburl import open_database
from storage.nodes import DOWN_AFTER, HEARTBEAT, Nodes


def test_an_unchanged_row_is_written_every_rewrite_not_every_beat(tmp_path):
    config = cfg.load(None, env={}, overrides={
        "ami.secret": "x", "spool.dir": str(tmp_path), "storage.path": str(tmp_path / "archive"),
        "privacy.hmac_key_file": str(tmp_path / "hmac.key"), "node.name": "pbx-a",
        "database.url": f"sqlite:///{tmp_path / 'cv.db'}"}, check_paths=False)
    db = open_database(config.database.url)
    try:
        nodes, catalog = Nodes(db), Catalog(db, node="pbx-a")
        app = web.Application()
        app[K.config] = config
        beat = Heartbeat(app, nodes)
        assert HEARTBEAT < REWRITE < DOWN_AFTER / 2

        def seen() -> float:
            return next(r.last_seen for r in nodes.list() if r.name == "pbx-a")

        assert beat.beat()  # the first beat writes
        first = seen()
        time.sleep(0.01)
        assert not beat.beat()  # nothing changed: no write
        assert seen() == first

        catalog.add(Recording(recording_id="r1", consent_id="c", uniqueid="u1", linkedid="l", channel="c",
                              spool_path=str(tmp_path / "r1.wav"), caller_hmac="", did="", agent="",
                              rule="default", jurisdiction="ZA", retention_class="default",
                              consent_state="granted", started_at=time.time()))
        assert beat.beat()  # the queue changed: written at once
        assert next(r.queue for r in nodes.list() if r.name == "pbx-a") == {"recording": 1}
        assert not beat.beat()

        written = beat.written
        beat.written = type(written)(**{**written.__dict__, "last_seen": written.last_seen - REWRITE})
        assert beat.beat()  # REWRITE seconds old: written again, so the node stays up
        assert seen() > first
    finally:
        db.close()
