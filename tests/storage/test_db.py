import os
import sqlite3
import subprocess
import threading
from contextlib import closing
from pathlib import Path

import pytest

from storage.dburl import open_database, parse_url
from storage.errors import PermanentError, RetryableError, StorageError
from storage.sqlitedb import SqliteDatabase as Database
from storage.sqlitedb import split_sql


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "t.db")
    yield database
    database.close()


def test_parse_url_absolute_and_relative():
    assert parse_url("sqlite:////var/lib/callvault/callvault.db").path == Path("/var/lib/callvault/callvault.db")
    assert parse_url("/var/lib/callvault/x.db").path == Path("/var/lib/callvault/x.db")
    assert parse_url("sqlite:///rel.db").path == Path("rel.db")
    assert parse_url("sqlite:///data/x.db").path == Path("data/x.db")


@pytest.mark.parametrize(
    "url", ["sqlite://:memory:", "sqlite:///", "sqlite:///:memory:", "sqlite:///a.db?mode=ro", "x.db", ""]
)
def test_parse_url_rejects(url):
    with pytest.raises(ValueError, match="expected sqlite:////absolute/path.db"):
        parse_url(url)


def test_open_relative_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_database("sqlite:///rel.db") as database:
        assert database.path == Path("rel.db")
    assert (tmp_path / "rel.db").exists()


def test_pragmas(tmp_path):
    with open_database(f"sqlite:///{tmp_path}/p.db", busy_timeout=2.5) as database:
        with database.write() as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
        with database.read() as conn:
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
            assert conn.execute("PRAGMA query_only").fetchone()[0] == 1
            assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_missing_directory_names_path(tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "x.db"
    with pytest.raises(PermanentError) as info:
        open_database(f"sqlite:///{path}")
    assert str(path.parent) in str(info.value)
    assert "does not exist" in str(info.value)


def test_parent_is_a_file_names_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PermanentError, match=str(blocker)):
        Database(blocker / "x.db")


def test_unwritable_directory_names_path(tmp_path):
    # An immutable directory refuses new files even to root (the suite runs as root).
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    subprocess.run(["chattr", "+i", str(ro)], check=True)
    try:
        with pytest.raises(PermanentError) as info:
            Database(ro / "x.db")
        assert str(ro) in str(info.value)
    finally:
        subprocess.run(["chattr", "-i", str(ro)], check=True)
        ro.chmod(0o700)


def test_write_commits_and_rolls_back(db):
    with db.write() as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(KeyError):
        with db.write() as conn:
            conn.execute("INSERT INTO t VALUES (2)")
            raise KeyError("boom")
    with db.read() as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_sql_errors_become_storage_errors(db):
    with pytest.raises(PermanentError, match="no such table"):
        with db.write() as conn:
            conn.execute("INSERT INTO missing VALUES (1)")
    with pytest.raises(PermanentError, match="readonly|read-only|query_only|attempt to write"):
        with db.read() as conn:
            conn.execute("CREATE TABLE t (x)")


def test_write_is_not_reentrant(db):
    with db.write():
        with pytest.raises(RuntimeError, match="re-entrant"):
            with db.write():
                pass


def test_locked_by_other_process_is_retryable(tmp_path):
    path = tmp_path / "l.db"
    with Database(path, busy_timeout=0.05) as database:
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(RetryableError):
                with database.write():
                    pass
            other.execute("ROLLBACK")
        with database.write():
            pass


def test_readers_are_pooled_and_concurrent(db):
    with db.write() as conn:
        conn.execute("CREATE TABLE t (x)")
    with db.read() as a, db.read() as b:
        assert a is not b
    with db.read() as c:
        assert c in (a, b)


def test_close_closes_everything_and_is_idempotent(tmp_path):
    database = Database(tmp_path / "c.db")
    with database.read():
        pass
    lent = database.read()
    conn = lent.__enter__()
    database.close()
    database.close()
    assert database.closed
    lent.__exit__(None, None, None)  # a connection lent during close() is closed on return
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    with pytest.raises(StorageError, match="closed"):
        with database.write():
            pass
    with pytest.raises(StorageError, match="closed"):
        with database.read():
            pass


def test_close_waits_for_running_write(tmp_path):
    database = Database(tmp_path / "w.db")
    inside, release = threading.Event(), threading.Event()

    def writer():
        with database.write() as conn:
            conn.execute("CREATE TABLE t (x)")
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=writer)
    thread.start()
    inside.wait(5)
    closer = threading.Thread(target=database.close)
    closer.start()
    assert not database.closed
    release.set()
    thread.join(5)
    closer.join(5)
    assert database.closed
    with Database(tmp_path / "w.db") as reopened, reopened.read() as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchone()


MIGRATIONS_V1 = [
    "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);",
    """
    CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER NOT NULL REFERENCES a (id));
    CREATE TRIGGER b_no_delete BEFORE DELETE ON b BEGIN SELECT RAISE(ABORT, 'no; really'); END;
    """,
]


def test_migrate_applies_in_order_once(db):
    assert db.schema_version("demo") == 0
    assert db.migrate("demo", {"sqlite": MIGRATIONS_V1}) == 2
    assert db.migrate("demo", {"sqlite": MIGRATIONS_V1}) == 2
    assert db.migrate("demo", {"sqlite": [*MIGRATIONS_V1, "ALTER TABLE a ADD COLUMN w TEXT"]}) == 3
    assert db.schema_version("demo") == 3
    assert db.schema_version("other") == 0
    with db.write() as conn:
        conn.execute("INSERT INTO a (id, v, w) VALUES (1, 'x', 'y')")
        conn.execute("INSERT INTO b (id, a_id) VALUES (1, 1)")


def test_migrate_enforces_foreign_keys(db):
    db.migrate("demo", {"sqlite": MIGRATIONS_V1})
    with pytest.raises(PermanentError, match="FOREIGN KEY"):
        with db.write() as conn:
            conn.execute("INSERT INTO b (id, a_id) VALUES (1, 99)")


def test_failed_migration_rolls_back_that_step(db):
    with pytest.raises(PermanentError):
        db.migrate("demo", {"sqlite": ["CREATE TABLE a (id INTEGER)", "CREATE TABLE c (x); INSERT INTO nope VALUES (1)"]})
    assert db.schema_version("demo") == 1
    with db.read() as conn:
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'c'").fetchone() is None


def test_newer_schema_is_refused(db):
    db.migrate("demo", {"sqlite": MIGRATIONS_V1})
    with pytest.raises(PermanentError, match="newer"):
        db.migrate("demo", {"sqlite": MIGRATIONS_V1[:1]})


def test_split_sql_keeps_trigger_bodies_whole():
    statements = split_sql(MIGRATIONS_V1[1])
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    with pytest.raises(ValueError, match="incomplete"):
        split_sql("CREATE TABLE x (a); CREATE TRIGGER t BEFORE DELETE ON x BEGIN SELECT 1;")


def test_unwritable_directory_check_as_any_user(tmp_path, monkeypatch):
    # The suite may run as root, where os.access() says yes to everything.
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode)
    )
    with pytest.raises(PermanentError, match="not writable") as info:
        Database(tmp_path / "x.db")
    assert str(tmp_path) in str(info.value)
