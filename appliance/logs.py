"""Logging for `callvault serve`: ``[log] format`` text (for people) or json (one object
a line, for collectors), ``[log] level``.

Every record carries the ids of the call it was logged for, where known
(``linkedid``, ``consent_id``, ``recording_id``; bound by the FastAGI handlers and the
archive jobs, storage/logcontext.py). JSON lines hold them as fields; text lines end
with them in brackets. Messages never carry caller data (numbers, names): the modules
that log keep to ids.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import TextIO

from storage import logcontext

from .config import LogConfig

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CallContext(logging.Filter):
    """Copies the ids bound for the current call onto each record (as attributes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = logcontext.current()
        record.call_ids = ids
        for name, value in ids.items():
            setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = (-1, "")  # (whole second, its local time text): strftime once a second

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second[0]:
            self._second = (second, time.strftime(self.default_time_format, self.converter(record.created)))
        return self.default_msec_format % (self._second[1], record.msecs)

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            text = super().format(record)
        else:  # what Formatter.format gives for TEXT_FORMAT, without its layers
            record.message = record.getMessage()
            record.asctime = self.formatTime(record)
            text = f"{record.asctime} {record.levelname} {record.name}: {record.message}"
        ids = getattr(record, "call_ids", None)
        if ids:
            text += " [" + " ".join(f"{k}={v}" for k, v in ids.items()) + "]"
        return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "call_ids", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


class LoopBatchedHandler(logging.StreamHandler):
    """A stream handler that writes the lines an event loop's thread logs once per turn
    of that loop: one ``write()`` for every line of the callbacks the loop ran in that
    turn, instead of one per line (a busy FastAGI server logs a line per call). Lines
    logged on any other thread, or with no loop running, are written at once, as are
    warnings and above (and everything before them still held). Held lines are written
    at the end of the turn or by :meth:`flush` (``logging.shutdown`` calls it at exit);
    a process killed outright loses at most the lines of the turn it was in."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._held: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - as StreamHandler.emit does
            self.handleError(record)
            return
        loop = asyncio._get_running_loop()  # this thread's loop; None elsewhere
        if loop is None or record.levelno >= logging.WARNING:
            self._write(line)
            return
        self._held.append(line)  # Handler.handle holds the lock around emit
        if len(self._held) == 1:
            loop.call_soon(self.flush)

    def _write(self, line: str) -> None:
        self.acquire()
        try:
            held, self._held = self._held, []
            self.stream.write("".join(held) + line if held else line)
            self.stream.flush()
        except Exception:  # noqa: BLE001 - as StreamHandler.emit does: logging never raises
            self.handleError(logging.makeLogRecord({"msg": line}))
        finally:
            self.release()

    def flush(self) -> None:
        if self._held:
            self._write("")
        else:
            super().flush()


def configure(log: LogConfig, *, verbose: bool = False, stream: TextIO | None = None) -> None:
    """Replace the root logger's handlers with one writing ``log.format`` to stderr."""
    handler = LoopBatchedHandler(stream or sys.stderr)
    handler.addFilter(CallContext())
    handler.setFormatter(JsonFormatter() if log.format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else getattr(logging, log.level.upper()))
    # Neither format shows the caller's file and line, thread or process: don't collect
    # them for every record (the logging HOWTO's "Optimization" switches).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
