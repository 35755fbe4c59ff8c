"""The group-commit writer behind :meth:`storage.db.Database.submit` and
:meth:`storage.db.Database.write_async`.

One thread takes queued write operations from many concurrent callers and runs them
back to back inside ONE ``BEGIN IMMEDIATE ... COMMIT`` (through
:meth:`Database.write`, so under the same lock), i.e. one fsync for the whole batch.
The batch runs without ``SAVEPOINT`` s (each would cost SQLite a statement journal).
If an operation raises, its caller gets the exception, the transaction is rolled
back, and the others run again in a new one, each in its own ``SAVEPOINT``: they
still commit. So an operation may run twice and must do nothing but SQL on ``conn``. Every caller is told its
result only after the COMMIT has returned, so "returned" still means "on disk".
Operations run in submission order, so a ledger append submitted before another gets
the lower ``seq``.

An operation that can run together with others of its kind has a ``run_many``
attribute: ``run_many(conn, ops)`` returns their results in order. The writer hands
each run of two or more consecutive operations with the same ``run_many`` to it at
once (the ledger: one head read and multi-row ``INSERT`` s, :mod:`storage.rows`),
so a batch costs a few statements instead of a few per operation: fewer SQLite calls,
and fewer hand-offs of the GIL between this thread and the event loop, which is what
a statement costs most under load. If such a run raises, the transaction is rolled
back and every operation of the batch runs again alone, each in its own
``SAVEPOINT``, so each caller gets its own result or error; one that fails before the
run writes anything (:class:`storage.rows.OpFailed`) keeps its error and is not run
again, as a lone operation that raises.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from .errors import PermanentError
from .rows import OpFailed

__all__ = ["MAX_BATCH", "GroupCommitWriter"]

T = TypeVar("T")
WriteOp = Callable[[Any], Any]

# Operations per group-commit transaction at most: bounds the time the write lock is
# held (sync writers such as the archiver wait behind a batch) and the work lost to
# one failed COMMIT.
MAX_BATCH = 512


class _Pending:
    __slots__ = ("error", "future", "loop", "op", "result")

    def __init__(self, op: WriteOp, loop: asyncio.AbstractEventLoop | None, future: Any) -> None:
        self.op = op
        self.loop = loop
        self.future = future  # asyncio.Future when loop is set, else concurrent.futures.Future
        self.result: Any = None
        self.error: BaseException | None = None


_STOP = object()


class _Undo(Exception):
    """Raised inside a batch's transaction to roll it back (an operation failed)."""


def _settle_async(batch: list[_Pending]) -> None:
    """In the event loop: resolve the futures of one committed (or failed) batch."""
    for p in batch:
        if p.future.done():  # the awaiting task was cancelled
            continue
        if p.error is not None:
            p.future.set_exception(p.error)
        else:
            p.future.set_result(p.result)


class Writable(Protocol):
    """What the writer needs of its ``storage.db.Database``: where it is, its write
    transaction (the same lock single writes take) and its error translation."""

    name: str

    def write(self) -> AbstractContextManager[Any]: ...

    def translate(self, exc: BaseException) -> BaseException: ...


class GroupCommitWriter:
    """One thread committing queued write operations in batches: one fsync per batch.

    Made by :class:`Database` on first use (:meth:`Database.submit`,
    :meth:`Database.write_async`) and closed by :meth:`Database.close`, which runs
    every operation already queued before it returns (nothing accepted is dropped).

    A batch is whatever is queued when the thread comes back from the previous
    COMMIT (up to ``max_batch``): the thread never waits to fill a batch, so a lone
    write costs what :meth:`Database.write` costs.
    """

    def __init__(self, db: Writable, *, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders submissions against the stop marker
        self._closing = False
        self.batches = 0  # committed or failed transactions (for tests and stats)
        self.ops = 0
        self._thread = threading.Thread(target=self._run, name="callvault-db-writer", daemon=True)
        self._thread.start()

    # -- submitting ------------------------------------------------------------------

    def _put(self, pending: _Pending) -> None:
        with self._lock:
            if self._closing:
                raise PermanentError(f"database {self._db.name} is closed")
            self._queue.put(pending)

    def submit(self, op: Callable[[Any], T]) -> concurrent.futures.Future[T]:
        if threading.current_thread() is self._thread:
            raise RuntimeError("a group-commit operation cannot submit another and wait for it")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._put(_Pending(op, None, future))
        return future

    def submit_async(self, op: Callable[[Any], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._put(_Pending(op, loop, future))
        return future

    def close(self) -> None:
        """Stop taking operations, commit every one already queued, stop the thread."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("Database.close() called inside a group-commit operation")
        with self._lock:
            if not self._closing:
                self._closing = True
                self._queue.put(_STOP)
        self._thread.join()

    # -- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        stop = False
        while not stop:
            batch = [get()]
            if batch[0] is _STOP:
                return
            while len(batch) < self._max_batch:
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True  # nothing can be queued after it: finish this batch, then exit
                    break
                batch.append(item)
            self._commit(batch)
            self._notify(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        db = self._db
        self.batches += 1
        self.ops += len(batch)
        try:
            failed = self._run_all(batch)
            if failed is not None:  # rolled back; that one keeps its error, the others again
                with db.write() as conn:
                    self._one_by_one(conn, batch, skip=failed)
        except BaseException as exc:  # noqa: BLE001 - BEGIN or COMMIT failed, or a lone op raised
            error = db.translate(exc)
            for p in batch:
                if p.error is None:
                    p.error, p.result = error, None

    def _run_all(self, batch: list[_Pending]) -> int | None:
        """The common case: every operation of the batch in one transaction with no
        SAVEPOINT (each costs SQLite a statement journal), runs of operations with the
        same ``run_many`` together. None once committed; if one raises, it gets its
        error, the transaction is rolled back and its index returned (-1 when a run
        raised: which of its operations is not known, so none is skipped)."""
        db = self._db
        failed: int | None = None
        try:
            with db.write() as conn:
                i, n = 0, len(batch)
                while i < n:
                    p = batch[i]
                    many = getattr(p.op, "run_many", None)
                    j = i + 1
                    if many is not None:
                        while j < n and getattr(batch[j].op, "run_many", None) == many:
                            j += 1
                    try:
                        if j - i > 1:
                            run = batch[i:j]
                            for q, result in zip(run, many(conn, [q.op for q in run]), strict=True):
                                q.result = result
                        else:
                            p.result = p.op(conn)
                    except OpFailed as exc:  # one of the run, before it wrote anything
                        p = batch[i + exc.index]
                        p.error, p.result, failed = db.translate(exc.error), None, i + exc.index
                        raise _Undo from exc.error
                    except Exception as exc:
                        if j - i > 1:
                            failed = -1
                            if not conn.in_transaction:
                                self._lost(batch, db.translate(exc))
                        else:
                            p.error, p.result = db.translate(exc), None
                            if n > 1 and not conn.in_transaction:
                                self._lost(batch, p.error)
                            failed = i
                        raise _Undo from exc
                    i = j
        except _Undo:
            pass
        return failed if len(batch) > 1 else None

    def _one_by_one(self, conn: Any, batch: list[_Pending], *, skip: int) -> None:
        """Every operation but ``batch[skip]`` (which failed), each in its own SAVEPOINT:
        one that raises is rolled back alone."""
        db = self._db
        for i, p in enumerate(batch):
            if i == skip:
                continue
            p.result = None
            conn.execute("SAVEPOINT callvault_op")
            try:
                p.result = p.op(conn)
            except Exception as exc:  # noqa: BLE001 - goes to that operation's caller
                p.error = db.translate(exc)
                if not conn.in_transaction:
                    self._lost(batch, p.error)
                conn.execute("ROLLBACK TO callvault_op")
            conn.execute("RELEASE callvault_op")

    def _lost(self, batch: list[_Pending], error: BaseException) -> None:
        """The database gave up the whole transaction (disk full, I/O error, connection
        lost) when an operation failed with ``error``: the others of the batch are undone as well."""
        lost = PermanentError(f"database {self._db.name}: write transaction aborted by a failed "
                              f"write in the same batch: {error}")
        for other in batch:
            if other.error is None:  # those that failed alone keep their own error
                other.error, other.result = lost, None
        raise lost

    def _notify(self, batch: list[_Pending]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        for p in batch:
            if p.loop is None:
                if p.error is not None:
                    p.future.set_exception(p.error)
                else:
                    p.future.set_result(p.result)
            else:
                by_loop.setdefault(p.loop, []).append(p)
        for loop, waiting in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_async, waiting)
            except RuntimeError:
                pass  # that event loop is closed: nobody is waiting any more
