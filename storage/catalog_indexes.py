"""Catalog schema version 5: costs that do not grow with the archive.

Almost every row of a long-running catalog is ``archived`` (or ``erased``); the queries
run on every call, job, scrape and page must read only the rows they return. This
migration gives each of them an index, and keeps the two ever-growing totals in a
table of their own:

* supervisor search (:meth:`Catalog.search`, newest first): one index per filter,
  each ending in ``started_at`` so ``ORDER BY started_at DESC LIMIT n`` walks the
  index backwards and stops after ``n`` rows: ``(did, started_at)``,
  ``(agent, started_at)``, ``(caller_hmac, started_at)``,
  ``(consent_state, started_at)``, ``(state, started_at)``; a date range alone uses
  ``recordings_started``. They replace ``recordings_caller`` and ``recordings_state``.
* hang-ups: ``(uniqueid, started_at)`` (:meth:`Catalog.by_uniqueid`, on every hang-up event).
* retention (:meth:`Catalog.retention_due`): three partial indexes ending in
  ``retain_until``: archived rows, archived rows with erasure requested, and erased
  rows that still have a payload (``leftover``); the last two hold only rare rows.
  Each also names the columns the query tests for equality, so that SQLite (which
  picks indexes by how many leading columns a query pins) prefers it to
  ``(state, started_at)``.
* reporting: ``(archived_at)`` (``archived_since`` on every metrics scrape,
  ``last_archived_at``), a partial index on ``quarantined_at`` (non-null only).
* the spool scan (:meth:`Catalog.by_spool_path`): ``spool_name``, a generated column
  (the file name of ``spool_path``), indexed: an exact lookup instead of a
  ``LIKE '%/name'`` scan.
* queue figures (:meth:`Catalog.queue_counts`): the states a job passes through are
  counted over the ``(state, started_at)`` index, reading only those rows; the
  ``archived`` and ``erased`` totals come from table ``recording_totals``, which
  triggers keep exact in the transaction that inserts, moves or deletes a row.

On PostgreSQL the generated column is ``STORED`` (adding it rewrites the table once,
at migration time); on SQLite it is ``VIRTUAL`` (nothing is rewritten; the index is
built once). The totals are counted once, in the migration's transaction.
"""

from __future__ import annotations

# The ever-growing states, counted by trigger into recording_totals.
COUNTED = ("archived", "erased")
_COUNTED_SQL = ", ".join(f"'{s}'" for s in COUNTED)

_INDEXES = """
    CREATE INDEX recordings_did ON recordings(did, started_at);
    CREATE INDEX recordings_agent ON recordings(agent, started_at);
    CREATE INDEX recordings_caller_started ON recordings(caller_hmac, started_at);
    CREATE INDEX recordings_consent ON recordings(consent_state, started_at);
    CREATE INDEX recordings_state_started ON recordings(state, started_at);
    DROP INDEX recordings_caller;
    DROP INDEX recordings_state;
    CREATE INDEX recordings_uniqueid ON recordings(uniqueid, started_at);
    CREATE INDEX recordings_retain ON recordings(state, retain_until) WHERE state = 'archived';
    CREATE INDEX recordings_erase ON recordings(erase_requested, state, retain_until)
        WHERE state = 'archived' AND erase_requested = 1;
    CREATE INDEX recordings_leftover ON recordings(state, retain_until) WHERE state = 'erased' AND object_key != '';
    CREATE INDEX recordings_archived_at ON recordings(archived_at);
    CREATE INDEX recordings_quarantined ON recordings(quarantined_at) WHERE quarantined_at IS NOT NULL;
    CREATE INDEX recordings_spool_name ON recordings(spool_name);
    CREATE TABLE recording_totals (state TEXT PRIMARY KEY, n BIGINT NOT NULL);
"""

_TOTALS = "".join(f"""
    INSERT INTO recording_totals (state, n) SELECT '{s}', COUNT(*) FROM recordings WHERE state = '{s}';""" for s in COUNTED)

SQLITE_V5 = f"""
    ALTER TABLE recordings ADD COLUMN spool_name TEXT
        GENERATED ALWAYS AS (substr(spool_path, length(rtrim(spool_path, replace(spool_path, '/', ''))) + 1)) VIRTUAL;
    {_INDEXES}
    {_TOTALS}
    CREATE TRIGGER recordings_total_insert AFTER INSERT ON recordings WHEN NEW.state IN ({_COUNTED_SQL})
    BEGIN
        UPDATE recording_totals SET n = n + 1 WHERE state = NEW.state;
    END;
    CREATE TRIGGER recordings_total_delete AFTER DELETE ON recordings WHEN OLD.state IN ({_COUNTED_SQL})
    BEGIN
        UPDATE recording_totals SET n = n - 1 WHERE state = OLD.state;
    END;
    CREATE TRIGGER recordings_total_update AFTER UPDATE OF state ON recordings
    WHEN OLD.state IS NOT NEW.state AND (OLD.state IN ({_COUNTED_SQL}) OR NEW.state IN ({_COUNTED_SQL}))
    BEGIN
        UPDATE recording_totals SET n = n - 1 WHERE state = OLD.state;
        UPDATE recording_totals SET n = n + 1 WHERE state = NEW.state;
    END;
"""

# Rows of recording_totals are updated in state-name order, so two transactions that
# both move rows between 'archived' and 'erased' never wait on each other crosswise.
PG_V5 = f"""
    ALTER TABLE recordings ADD COLUMN spool_name TEXT
        GENERATED ALWAYS AS (substring(spool_path from '[^/]*$')) STORED;
    {_INDEXES}
    {_TOTALS}
    CREATE FUNCTION recordings_total() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE gone TEXT; came TEXT; r RECORD;
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN gone := OLD.state; END IF;
        IF TG_OP IN ('UPDATE', 'INSERT') THEN came := NEW.state; END IF;
        FOR r IN SELECT v.s, v.d FROM (VALUES (gone, -1), (came, 1)) AS v(s, d)
                 WHERE v.s IN ({_COUNTED_SQL}) ORDER BY v.s LOOP
            UPDATE recording_totals SET n = n + r.d WHERE recording_totals.state = r.s;
        END LOOP;
        RETURN NULL;
    END $$;
    CREATE TRIGGER recordings_total_insert AFTER INSERT ON recordings
        FOR EACH ROW WHEN (NEW.state IN ({_COUNTED_SQL})) EXECUTE FUNCTION recordings_total();
    CREATE TRIGGER recordings_total_delete AFTER DELETE ON recordings
        FOR EACH ROW WHEN (OLD.state IN ({_COUNTED_SQL})) EXECUTE FUNCTION recordings_total();
    CREATE TRIGGER recordings_total_update AFTER UPDATE OF state ON recordings
        FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state
                           AND (OLD.state IN ({_COUNTED_SQL}) OR NEW.state IN ({_COUNTED_SQL})))
        EXECUTE FUNCTION recordings_total();
"""

# Version 6, PostgreSQL only (SQLite's indexes stay as version 5 made them). The planner
# drops a condition that an index's WHERE already implies (``state = 'archived'``) from
# that index's search, so an index leading with ``state`` was read from its first entry to
# its last to find the due ``retain_until`` values (all 2,000,000 archived rows of a full
# catalog, 100 ms). Keyed on ``retain_until`` alone, the sweep reads only the due rows.
PG_V6 = """
    DROP INDEX recordings_retain;
    DROP INDEX recordings_erase;
    DROP INDEX recordings_leftover;
    CREATE INDEX recordings_retain ON recordings(retain_until) WHERE state = 'archived';
    CREATE INDEX recordings_erase ON recordings(retain_until) WHERE state = 'archived' AND erase_requested = 1;
    CREATE INDEX recordings_leftover ON recordings(retain_until) WHERE state = 'erased' AND object_key != '';
"""
SQLITE_V6 = ""

# Version 7, both dialects: the two indexes whose key is still empty when the consent
# handler inserts a row (``agent`` is set when an agent answers, ``archived_at`` when the
# archive job ends) hold only the rows that have one. A live row costs two B-tree
# inserts fewer at consent time (its agent and archive time come later, one insert each
# as before); the searches add the index's condition (``agent <> ''``, ``archived_at IS
# NOT NULL``) so that both planners still use them.
V7 = """
    DROP INDEX recordings_agent;
    CREATE INDEX recordings_agent ON recordings(agent, started_at) WHERE agent <> '';
    DROP INDEX recordings_archived_at;
    CREATE INDEX recordings_archived_at ON recordings(archived_at) WHERE archived_at IS NOT NULL;
"""
