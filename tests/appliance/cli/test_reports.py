"""`callvault retention plan` (a dry run that must match the next real sweep) and
`callvault report NAME` over a catalog and ledger the archiver, the sweeper and the
CLI filled."""

from __future__ import annotations

import csv
import datetime
import io
import json
import time

import pytest

from appliance import compose
from appliance import config as cfg
from appliance.cli import build_parser
from archiver.retention import RetentionSweeper
from storage.entries import ConsentBody


def run(capsys, *argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(argv)
    code = args.fn(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def site(tmp_path, make_env, capsys):
    """Archived recordings: one of a 3 s class, one erase-requested, one erase-requested
    but held on the stored version, one kept; an identity that can read them."""
    code, out, _ = run(capsys, "keys", "generate", "--out", str(tmp_path / "id.txt"))
    assert code == 0
    recipient = next(line.split()[-1] for line in out.splitlines() if line.startswith("public key:"))
    root = tmp_path / "env0"
    path = tmp_path / "callvault.toml"
    path.write_text(f"""
[ami]
secret = "x"
[database]
url = "sqlite:///{root / 'callvault.db'}"
[spool]
dir = "{root / 'spool'}"
[archive]
recipients = {json.dumps([recipient])}
retention = ["short=COMPLIANCE:3s"]
[storage]
backend = "local"
path = "{root / 'archive'}"
""")
    config = cfg.load(path, env={}, check_paths=False)
    compose.init_archive(config)
    archive = compose.build_archive(config)
    env = make_env(archive.payload, archive.headers)
    # The reports group by day: the site's own entries are all dated noon UTC today, so
    # a run across midnight does not split them between two days.
    noon = datetime.datetime.combine(datetime.datetime.now(datetime.UTC).date(), datetime.time(12),
                                     datetime.UTC)
    env.ledger._clock = lambda: noon
    archiver = compose.build_archiver(config, env.catalog, env.ledger, archive)
    rids = {}
    for name, cls in (("short", "short"), ("erase", "default"), ("held", "default"), ("keep", "default")):
        rids[name] = env.recording(retention_class=cls)
        assert archiver.pipeline.process(env.catalog.get(rids[name])).kind == "archived"
    for name in ("erase", "held"):
        env.catalog.update(rids[name], erase_requested=1, consent_state="revoked")
    held = env.catalog.get(rids["held"])
    archive.payload.set_legal_hold(held.object_key, True, held.version_id)
    yield path, rids, env, RetentionSweeper(env.catalog, env.ledger, archive)
    archive.close()


def test_retention_plan_lists_exactly_what_the_next_sweep_destroys(site, capsys):
    path, rids, env, sweeper = site
    short = env.catalog.get(rids["short"])
    time.sleep(max(0.0, short.retain_until - time.time()) + 0.3)  # the 3 s class (and its lock) ran out
    code, out, _ = run(capsys, "retention", "plan", "--json", "-c", str(path))
    assert code == 0
    plan = {r["recording_id"]: (r["why"], r["action"]) for r in json.loads(out)}
    assert plan == {rids["short"]: ("retention", "delete"), rids["erase"]: ("erase", "shred"),
                    rids["held"]: ("erase", "held")}
    assert next(r["recording_id"] for r in json.loads(out)) == rids["short"]  # the oldest retain-until first
    code, out, _ = run(capsys, "retention", "plan", "--json", "--limit", "1", "-c", str(path))
    assert [r["recording_id"] for r in json.loads(out)] == [rids["short"]]
    code, out, _ = run(capsys, "retention", "plan", "-c", str(path))
    assert code == 0 and "payload locked until" in out and rids["keep"] not in out
    assert run(capsys, "retention", "plan", "--limit", "0", "-c", str(path))[0] == 2
    # The dry run changed nothing; the real sweep then does exactly what it said.
    assert env.catalog.get(rids["short"]).state == "archived"
    result = sweeper.sweep()
    assert result.deleted == [rids["short"]] and result.shredded == [rids["erase"]] and result.held == [rids["held"]]
    assert result.errors == []
    code, out, _ = run(capsys, "retention", "plan", "--json", "-c", str(path))
    assert [(r["recording_id"], r["action"]) for r in json.loads(out)] == [(rids["held"], "held")]


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_reports_show_consent_retention_erasures_access_and_objections(site, capsys, tmp_path):
    path, rids, env, sweeper = site
    base = ConsentBody.from_body(env.ledger.find(kind="consent")[0].data)
    for i, outcome in enumerate(("declined", "declined", "abandoned")):
        other = ConsentBody(**{**base.__dict__, "consent_id": f"c-us-{i}", "rule": "us-two-party",
                               "jurisdiction": "US-CA", "outcome": outcome, "record": False, "recording_id": None})
        env.ledger.append(ConsentBody.KIND, other.to_body(), call_id=other.linkedid)
    sweeper.sweep()  # shreds the erase-requested one: an ``erase`` entry
    code, _, err = run(capsys, "recordings", "get", rids["keep"], "--identity", str(tmp_path / "id.txt"),
                       "--out", str(tmp_path / "keep.wav"), "--reason", "complaint #17 review", "-c", str(path))
    assert code == 0, err
    env.ledger.append("erase.request", {"actor": "olga", "reason": "data subject asked", "request_id": "e-1"})
    env.ledger.append("audit.export", {"actor": "olga", "reason": "subject access request", "request_id": "x-1"})
    env.ledger.append("objection.received", {"actor": "olga", "reason": "caller objects", "case_id": "o-1"},
                      recording_id=rids["keep"])
    env.ledger.append("retention.delete", {"recording_id": "not-an-erasure"})  # in no report

    code, out, _ = run(capsys, "report", "consent", "-c", str(path))
    assert code == 0
    day = env.ledger._clock().date()  # every consent entry of the site has this day
    assert [tuple(r.values()) for r in _rows(out)] == [
        (day.isoformat(), "us-two-party", "US-CA", "abandoned", "1"),
        (day.isoformat(), "us-two-party", "US-CA", "declined", "2"),
        (day.isoformat(), "za-opt-in", "ZA", "granted", "4")]
    tomorrow = (day + datetime.timedelta(days=1)).isoformat()
    yesterday = (day - datetime.timedelta(days=1)).isoformat()
    assert _rows(run(capsys, "report", "consent", "--since", tomorrow, "-c", str(path))[1]) == []
    assert _rows(run(capsys, "report", "consent", "--until", yesterday, "-c", str(path))[1]) == []
    assert len(_rows(run(capsys, "report", "consent", "--since", day.isoformat(), "--until", day.isoformat(),
                         "-c", str(path))[1])) == 3
    code, _, err = run(capsys, "report", "consent", "--since", "last week", "-c", str(path))
    assert code == 2 and "--since/--until" in err and "last week" in err

    code, out, _ = run(capsys, "report", "retention", "--format", "json", "-c", str(path))
    rows = json.loads(out)["rows"]
    by_id = {r["recording_id"]: r for r in rows}
    # Still holding audio: all but the shredded one's header; its payload is still locked.
    assert set(by_id) == set(rids.values())
    assert by_id[rids["erase"]]["state"] == "erased" and by_id[rids["keep"]]["state"] == "archived"
    keep = env.catalog.get(rids["keep"])
    assert by_id[rids["keep"]]["due_at"] == datetime.datetime.fromtimestamp(
        keep.retain_until, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [r["retention_class"] for r in rows] == ["default"] * 3 + ["short"]  # by class, then due date

    code, out, _ = run(capsys, "report", "erasures", "-c", str(path))
    got = [(r["kind"], r["recording_id"], r["actor"], r["reason"]) for r in _rows(out)]
    assert got == [("erase", rids["erase"], "", "erasure requested"), ("erase.request", "", "olga", "data subject asked"),
                   ("audit.export", "", "olga", "subject access request")]

    code, out, _ = run(capsys, "report", "access", "-c", str(path))
    [row] = _rows(out)
    assert (row["kind"], row["recording_id"], row["reason"]) == ("audit.get", rids["keep"], "complaint #17 review")
    assert row["actor"] and "via=cli" in row["detail"]

    code, out, _ = run(capsys, "report", "objections", "--format", "json", "-c", str(path))
    [obj] = json.loads(out)["rows"]
    assert obj["kind"] == "objection.received" and obj["recording_id"] == rids["keep"] and obj["detail"] == "case_id=o-1"
    assert "ab" * 32 not in out  # never a caller HMAC
