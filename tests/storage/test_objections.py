"""Standing objections on SQLite: the consent route's copy of the objections in force
(storage.objections._Marker). Every change committed before a call is seen by that
call, from another process too; a change that never commits is never seen."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from storage import objections as objections_mod
from storage.errors import PermanentError
from storage.objections import Objections
from storage.sqlitedb import SqliteDatabase

A, B = "a" * 64, "b" * 64


class Counting(SqliteDatabase):
    """Counts the reads: a call answered from the copy reads nothing."""

    reads = 0

    def read(self):
        Counting.reads += 1
        return super().read()


def change(db: SqliteDatabase, op) -> None:
    with db.write() as c:
        op(c)


@pytest.fixture
def dbs(tmp_path):
    reader_db, writer_db = Counting(tmp_path / "callvault.db"), SqliteDatabase(tmp_path / "callvault.db")
    Counting.reads = 0
    yield Objections(reader_db, hold=True), Objections(writer_db)
    reader_db.close()
    writer_db.close()


def test_a_change_is_seen_on_the_next_call_and_calls_between_changes_read_nothing(dbs):
    reader, writer = dbs
    assert reader.objected(A) is None  # reads the objections once
    reads = Counting.reads
    assert [reader.objected(h) for h in (A, B, A)] == [None, None, None] and Counting.reads == reads

    oid, op = writer.add_op([A], "asked by phone", "officer")
    change(writer.db, op)
    assert reader.objected(A) == oid and reader.objected(B) is None
    reads = Counting.reads
    assert reader.objected(A) == oid and Counting.reads == reads

    change(writer.db, writer.lift_op([oid], "consent given again", "officer"))
    assert reader.objected(A) is None


def test_a_change_that_never_commits_is_never_seen_and_the_next_one_is(dbs):
    reader, writer = dbs
    assert reader.objected(A) is None
    _, op = writer.add_op([A], "asked", "officer")
    with pytest.raises(RuntimeError), writer.db.write() as c:
        op(c)  # the file now says the next generation
        raise RuntimeError("the ledger append failed: rolled back")
    assert [reader.objected(A), reader.objected(A)] == [None, None]
    reads = Counting.reads
    reader.objected(A)
    assert Counting.reads == reads + 1  # the file is ahead of the database: no copy is trusted

    oid, op = writer.add_op([A], "asked again", "officer")
    change(writer.db, op)
    assert reader.objected(A) == oid
    reads = Counting.reads
    assert reader.objected(A) == oid and Counting.reads == reads


def test_a_change_from_another_process_is_seen_on_the_next_call(dbs, tmp_path):
    reader, _ = dbs
    assert reader.objected(A) is None
    script = textwrap.dedent(f"""
        from storage.objections import Objections
        from storage.sqlitedb import SqliteDatabase
        db = SqliteDatabase({str(tmp_path / "callvault.db")!r})
        o = Objections(db)
        oid, op = o.add_op([{A!r}], "asked", "officer")
        with db.write() as c:
            op(c)
        print(oid)
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": root})
    assert reader.objected(A) == out.stdout.strip()


def test_a_marker_file_replaced_under_a_reader_is_noticed(dbs, monkeypatch):
    reader, writer = dbs
    monkeypatch.setattr(objections_mod._Marker, "RECHECK", 0.0)
    assert reader.objected(A) is None
    os.unlink(reader._marker.path)  # removed by hand; the next change makes a new one
    oid, op = writer.add_op([A], "asked", "officer")
    change(writer.db, op)
    assert reader.objected(A) == oid


def test_the_marker_file_is_private_and_says_the_generation(tmp_path):
    db = SqliteDatabase(tmp_path / "callvault.db")
    try:
        o = Objections(db)
        assert oct(os.stat(o._marker.path).st_mode & 0o777) == "0o600"
        _, op = o.add_op([A], "asked", "officer")
        change(db, op)
        with open(o._marker.path, "rb") as f:
            assert int.from_bytes(f.read(), "little") == 1
    finally:
        db.close()


def test_objections_in_force_on_each_backend(any_db):
    """PostgreSQL keeps no copy (hosts share it): each call reads the database."""
    o = Objections(any_db, hold=True)
    assert o._hold == (any_db.dialect == "sqlite")
    assert o.objected(A) is None
    oid, op = o.add_op([A, B], "asked", "officer")
    change(any_db, op)
    assert o.objected(A) == o.objected(B) == oid
    change(any_db, o.lift_op([oid], "consent given again", "officer"))
    assert o.objected(A) is None


def test_the_marker_file_is_owned_like_the_database_and_a_write_it_refuses_fails_the_change(tmp_path):
    """As root (the CLI run with sudo) the file is given to the database's owner, as
    SQLite does with -wal and -shm: else the service could not write it."""
    db_path = tmp_path / "callvault.db"
    db = SqliteDatabase(db_path)
    try:
        if os.geteuid() == 0:
            os.chown(db_path, 12345, 12345)
        o = Objections(db)
        st, marker = os.stat(db_path), os.stat(o._marker.path)
        assert (marker.st_uid, marker.st_gid) == (st.st_uid, st.st_gid)
        o._marker.path = str(tmp_path / "no-such-dir" / "callvault.db-objections")
        _, op = o.add_op([A], "asked", "officer")
        with pytest.raises(PermanentError, match="cannot write .*no-such-dir"):
            change(db, op)
        assert o.objected(A) is None  # rolled back
    finally:
        db.close()


def test_without_hold_each_call_reads_the_database(tmp_path):
    """The classic entry point: one call per process, one indexed read, no copy."""
    db = Counting(tmp_path / "callvault.db")
    try:
        o = Objections(db)
        oid, op = o.add_op([A], "asked", "officer")
        change(db, op)
        Counting.reads = 0
        assert [o.objected(A), o.objected(B), o.objected(A)] == [oid, None, oid] and Counting.reads == 3
        assert o._in_force == (-2, {})
    finally:
        db.close()
