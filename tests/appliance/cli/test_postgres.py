"""Two nodes on one PostgreSQL database: two OS processes append to the ledger at the
same time (single appends and group-committed batches); the chain stays one linear
chain with every entry, as `callvault ledger verify` says. The CLI runs end to end on
the PostgreSQL URL: `config check`, `users add`, `users list`, `ledger verify`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from itertools import pairwise

from storage.dburl import open_database
from storage.ledger import Ledger

APPENDER = textwrap.dedent("""
    import asyncio, sys, threading
    from storage.dburl import open_database
    from storage.ledger import Ledger

    url, node, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open_database(url, busy_timeout=30) as db:
        ledger = Ledger(db)
        sys.stdout.write("ready\\n"); sys.stdout.flush()
        sys.stdin.readline()  # both processes start appending together

        def single():
            for i in range(n):
                ledger.append("audit.play", {"node": node, "i": i})

        async def batched():
            for b in range(n // 10):
                await asyncio.gather(*(ledger.append_async("consent", {"node": node, "b": b, "i": i})
                                       for i in range(10)))

        t = threading.Thread(target=single)
        t.start()
        asyncio.run(batched())
        t.join()
""")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                          input=stdin, timeout=120, check=False)


def test_two_processes_append_one_linear_chain_and_the_cli_works_on_postgresql(pg_url, tmp_path):
    n = 60
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, pg_url, node, str(n)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for node in ("node-a", "node-b")]
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.close()
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
    finally:
        for p in procs:
            p.kill()
            p.wait()
            p.stdout.close()
            if not p.stdin.closed:
                p.stdin.close()

    with open_database(pg_url) as db:
        entries = list(Ledger(db).iter_entries())
    assert len(entries) == 2 * 2 * n
    assert [e.seq for e in entries] == list(range(1, 4 * n + 1))
    assert all(cur.prev_hash == prev.hash for prev, cur in pairwise(entries))
    nodes = [e.body.split('"node":"')[1][:6] for e in entries]
    assert any(a != b for a, b in pairwise(nodes)), "the two processes never interleaved"

    cfg = tmp_path / "callvault.toml"
    cfg.write_text(f'[ami]\nsecret = "x"\n[database]\nurl = "{pg_url}"\n[node]\nname = "node-a"\n'
                   f'[storage]\npath = "{tmp_path / "archive"}"\n')
    assert run("config", "check", "-c", str(cfg)).returncode == 0
    assert run("storage", "init", "-c", str(cfg)).returncode == 0
    added = run("users", "add", "alice", "--role", "officer", "--password-stdin", "-c", str(cfg),
                stdin="correct horse battery\n")
    assert added.returncode == 0, added.stderr
    listed = run("users", "list", "-c", str(cfg))
    assert listed.returncode == 0 and "alice" in listed.stdout
    verified = run("ledger", "verify", "-c", str(cfg))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"ledger ok: {4 * n} entries" in verified.stdout
