"""/metrics of a real `callvault serve`, read with prometheus_client's own parser:
types, ``_total`` names, build info, live figures, and the bearer token."""

from __future__ import annotations

import json
import platform
import socket
import time
import urllib.error
import urllib.request
from importlib import metadata

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from standalone import standalone_config, start_serve

TOKEN = "metrics-9c1e0d7b2f"


def scrape(url: str, token: str | None = None) -> tuple[int, str, dict]:
    request = urllib.request.Request(url + "/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict, family: str, sample: str | None = None, **labels: str) -> float:
    [v] = [s.value for s in fams[family].samples if s.name == (sample or family) and s.labels == labels]
    return v


def junk_agi_connection(port: int) -> None:
    """What a port scanner does to the FastAGI port: counted as a failed request."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        s.settimeout(5)
        while s.recv(4096):
            pass


def refused_agi_connection(port: int, source: str) -> bytes:
    """A peer outside [agi] allow: closed before it is read; returns what it got."""
    with socket.socket() as s:
        s.bind((source, 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        got = b""
        try:
            s.sendall(b"agi_network_script: consent\n\n")
            while chunk := s.recv(4096):
                got += chunk
        except ConnectionError:
            pass
        return got


def test_scrape_is_valid_prometheus_text_with_token_enforced(tmp_path):
    (tmp_path / "metrics.token").write_text(TOKEN + "\n")
    config = standalone_config(tmp_path / "site", web=f'metrics_token_file = "{tmp_path / "metrics.token"}"',
                               agi='allow = ["127.0.0.1"]')
    serve = start_serve(config, tmp_path / "serve.log")
    try:
        url = serve.wait_ready()
        # The token is enforced: none, a wrong one, another scheme.
        status, body, headers = scrape(url)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert "callvault_" not in body
        assert scrape(url, "wrong-token")[0] == 401
        assert scrape(url, TOKEN[:-1])[0] == 401
        basic = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Basic {TOKEN}"})
        try:
            urllib.request.urlopen(basic, timeout=10)
            raise AssertionError("Basic accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 401
        # /healthz stays open: the token guards /metrics only (503 here: no Asterisk).
        try:
            urllib.request.urlopen(url + "/healthz", timeout=10)
            raise AssertionError("/healthz up without Asterisk")
        except urllib.error.HTTPError as e:
            with e:
                assert e.code == 503 and json.load(e) == {"status": "down", "down": ["ami"]}

        junk_agi_connection(serve.config.agi.address[1])
        assert refused_agi_connection(serve.config.agi.address[1], "127.0.0.3") == b""
        status, text, headers = scrape(url, TOKEN)
        assert status == 200 and headers["Content-Type"] == CONTENT_TYPE_LATEST
        fams = families(text)

        # Counter families expose only name_total (and name_created); nothing else ends in _total.
        for fam in fams.values():
            for s in fam.samples:
                if fam.type == "counter":
                    assert s.name in (fam.name + "_total", fam.name + "_created"), (fam.name, s.name)
                else:
                    assert not s.name.endswith("_total"), (fam.name, fam.type, s.name)
        expected = {
            "callvault_calls": "counter", "callvault_consent_outcomes": "counter",
            "callvault_recording_pauses": "counter", "callvault_agi_requests": "counter",
            "callvault_agi_errors": "counter", "callvault_agi_refused": "counter",
            "callvault_playback_requests": "counter", "callvault_s3_requests": "counter",
            "callvault_ami_events": "counter",
            "callvault_playback_fetched_bytes": "counter", "callvault_playback_served_bytes": "counter",
            "callvault_archive_latency_seconds": "histogram", "callvault_build_info": "gauge",
            "callvault_live_calls": "gauge", "callvault_archive_queue_depth": "gauge",
            "callvault_recordings": "gauge", "callvault_archive_dead_letters": "gauge",
            "callvault_archive_retrying": "gauge", "callvault_ami_connected": "gauge",
            "callvault_storage_up": "gauge", "callvault_archive_last_success_timestamp_seconds": "gauge",
            "callvault_spool_free_bytes": "gauge", "callvault_agi_active_calls": "gauge",
            "process_resident_memory_bytes": "gauge", "process_cpu_seconds": "counter",
            "process_start_time_seconds": "gauge", "process_open_fds": "gauge",
        }
        assert {name: fams[name].type for name in expected if name in fams} == expected

        [build] = fams["callvault_build_info"].samples
        assert build.name == "callvault_build_info" and build.value == 1
        assert build.labels == {"version": metadata.version("callvault"), "python": platform.python_version()}

        # The live figures of this process: the archiver runs with its store reachable,
        # nobody answers on the AMI port, the junk connection was refused and counted.
        assert value(fams, "callvault_storage_up") == 1
        assert value(fams, "callvault_ami_connected") == 0
        assert value(fams, "callvault_agi_requests", "callvault_agi_requests_total") == 1
        assert value(fams, "callvault_agi_errors", "callvault_agi_errors_total") == 1
        assert value(fams, "callvault_agi_refused", "callvault_agi_refused_total") == 1
        assert value(fams, "callvault_spool_free_bytes") > 0
        assert value(fams, "callvault_archive_last_success_timestamp_seconds") == 0
        assert value(fams, "callvault_archive_queue_depth", state="failed") == 0
        assert value(fams, "callvault_archive_latency_seconds", "callvault_archive_latency_seconds_count") == 0
        started = value(fams, "process_start_time_seconds")
        assert time.time() - 120 < started <= time.time()
        assert serve.stop() == 0
        assert "FastAGI connection from 127.0.0.3:" in serve.log.read_text() and "refused" in serve.log.read_text()
    finally:
        serve.kill()


def test_without_a_token_metrics_are_open(tmp_path):
    serve = start_serve(standalone_config(tmp_path / "site"), tmp_path / "serve.log")
    try:
        status, text, _ = scrape(serve.wait_ready())
        assert status == 200 and families(text)["callvault_build_info"].samples[0].value == 1
        # A token sent anyway changes nothing.
        assert scrape(serve.url, "anything")[0] == 200
    finally:
        serve.kill()


def test_serve_anchors_the_ledger_every_n_entries_and_at_shutdown(tmp_path):
    import sqlite3

    from storage.anchors import anchors_in
    from storage.dburl import open_database
    from storage.ledger import Ledger
    from storage.localstore import LocalStore

    config = standalone_config(tmp_path / "site", '[node]\nname = "n1"\n[ledger]\nanchor_every = 2\nanchor_interval = "1h"\n')
    serve = start_serve(config, tmp_path / "serve.log")
    db_url = serve.config.database.url
    anchors = LocalStore(serve.config.storage.path / "payload")
    try:
        url = serve.wait_ready()
        db = open_database(db_url)  # another process appending, as classic AGI does
        try:
            ledger = Ledger(db)
            for i in range(2):
                ledger.append("consent", {"n": i})
            deadline = time.monotonic() + 30
            while value(families(scrape(url)[1]), "callvault_ledger_anchored_seq") != 2:
                assert time.monotonic() < deadline, "no anchor after 2 entries"
                time.sleep(0.2)
            ledger.append("consent", {"n": 2})  # 1 < anchor_every: anchored only at shutdown
        finally:
            db.close()
        fams = families(scrape(url)[1])
        assert value(fams, "callvault_ledger_anchored_seq") == 2
        assert value(fams, "callvault_ledger_anchor_check_failures", "callvault_ledger_anchor_check_failures_total") == 0
        assert serve.stop() == 0
    finally:
        serve.kill()
    assert [a.seq for a in anchors_in(anchors, "n1")] == [2, 3]

    # The tail deleted while the service was down: its first check fails, nothing is anchored.
    conn = sqlite3.connect(serve.config.database.sqlite_path)
    conn.execute("DROP TRIGGER ledger_no_delete")
    conn.execute("DELETE FROM ledger WHERE seq = 3")
    conn.commit()
    conn.close()
    serve = start_serve(config, tmp_path / "serve.log")
    try:
        url = serve.wait_ready()
        deadline = time.monotonic() + 30
        while value(fams := families(scrape(url)[1]), "callvault_ledger_anchor_check_failures",
                    "callvault_ledger_anchor_check_failures_total") != 1:
            assert time.monotonic() < deadline, "the deleted tail was not reported"
            time.sleep(0.2)
        assert value(fams, "callvault_ledger_anchored_seq") == 3
        assert serve.stop() == 0
    finally:
        serve.kill()
    assert "anchors/n1/000000000003-" in (tmp_path / "serve.log").read_text()
    assert [a.seq for a in anchors_in(anchors, "n1")] == [2, 3]
