"""Spool names shared by the consent handler (MixMonitor) and the archiver."""

from __future__ import annotations

from pathlib import Path

from archiver import spool
from storage.spool_names import DONE_SUFFIX, RECORDING_ID_RE, done_marker, recording_file


def test_recording_file_and_its_done_marker():
    assert recording_file("r" + "0" * 24) == "r" + "0" * 24 + ".wav"
    assert done_marker("/spool/r1.wav") == "/spool/r1.wav.done"
    assert DONE_SUFFIX == ".done"


def test_the_archiver_reads_the_names_the_handler_writes():
    path = Path("/spool") / recording_file("r" + "a" * 24)
    assert spool.is_recording_file(path)
    assert spool.marker_for(path) == Path(done_marker(str(path)))
    assert RECORDING_ID_RE.fullmatch(path.stem) and not RECORDING_ID_RE.fullmatch("stray-file")
