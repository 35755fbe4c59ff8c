"""The prompt library on disk, and its installation into Asterisk's sounds directory.

The library (default ``/var/lib/callvault/prompts``) holds one master per prompt,
``<lang>/<name>.wav`` (16 kHz mono 16-bit, already trimmed and normalised), with a
sidecar ``<lang>/<name>.json`` saying where it came from::

    {"source": "generated", "voice": "af", "text_sha256": "...", "pipeline": 1, ...}
    {"source": "recorded", "imported_from": "notice.mp3", "source_sha256": "...", ...}

A master without a sidecar counts as recorded, so nothing ever overwrites audio of
unknown origin. ``build`` regenerates a generated prompt when its text, voice or
``PIPELINE_VERSION`` changed, and leaves recorded prompts alone unless forced.

Keyed variants of the notices (``notice-opt-in-k56``: keys 5 and 6, see
announcements/catalog.py) are prompts like the others: ``build(keys=...)`` makes
them, later builds keep them up to date, ``install`` publishes them.

``install`` publishes every master in every Asterisk format as
``<sounds_dir>/callvault/<lang>/<name>.<ext>``. ``callvault`` is a symlink to a
hidden sibling directory ``.callvault-XXXXXXXX``: a new set is written and synced
in full beside it, then the link is replaced with one ``rename`` (atomic on POSIX).
A failure before that leaves the installed prompts untouched; Asterisk sees
either the old set or the new one, never a mixture. The set carries its manifest
(announcements/manifest.py): every file's prompt, language, format, SHA-256 and the
text or recording it was made from.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import enum
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # pydub is imported by audio where it is used
    from pydub import AudioSegment

from storage.prompt_names import KEYED_PROMPTS, keyed_name

from . import audio, tts
from .catalog import PROMPT_NAMES, Catalog, builtin_catalog, check_lang, check_name
from .errors import AnnouncementError, UnknownPrompt, UsageError
from .manifest import MANIFEST_NAME, SOUNDS_SUBDIR, file_record, manifest_bytes

DEFAULT_LIBRARY = "/var/lib/callvault/prompts"
PIPELINE_VERSION = 1  # bump when audio.prepare changes, so generated prompts are rebuilt
_STAGE_PREFIX = ".callvault-"


class Status(enum.StrEnum):
    GENERATED = "generated"
    RECORDED = "recorded"
    OUTDATED = "outdated"  # generated from an older text, voice or pipeline
    MISSING = "missing"


@dataclass(frozen=True)
class PromptInfo:
    source: str  # "generated" | "recorded"
    duration_s: float
    created: str
    voice: str | None = None
    text_sha256: str | None = None
    pipeline: int = PIPELINE_VERSION
    imported_from: str | None = None
    source_sha256: str | None = None


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    lang: str
    name: str
    action: str  # "generated" | "installed"


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class Coverage:
    languages: tuple[str, ...]
    names: tuple[str, ...]
    cells: Mapping[tuple[str, str], Status]

    def missing(self, lang: str) -> tuple[str, ...]:
        return tuple(n for n in self.names if self.cells[lang, n] is Status.MISSING)


@dataclass(frozen=True)
class BuildReport:
    generated: tuple[tuple[str, str], ...]
    up_to_date: int
    kept_recorded: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class InstallReport:
    path: str  # <sounds_dir>/callvault
    prompts: tuple[tuple[str, str], ...]
    files: int


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PromptLibrary:
    def __init__(self, root: str | os.PathLike[str] = DEFAULT_LIBRARY, catalog: Catalog | None = None) -> None:
        self.root = Path(root)
        self.catalog = catalog or builtin_catalog()

    def master_path(self, lang: str, name: str) -> Path:
        return self.root / check_lang(lang) / f"{check_name(name)}.wav"

    def info(self, lang: str, name: str) -> PromptInfo | None:
        master = self.master_path(lang, name)
        if not master.is_file():
            return None
        try:
            raw = json.loads(master.with_suffix(".json").read_text(encoding="utf-8"))
            return PromptInfo(**raw)
        except (OSError, ValueError, TypeError):
            return PromptInfo(source=Status.RECORDED, duration_s=0.0, created="")

    def status(self, lang: str, name: str) -> Status:
        info = self.info(lang, name)
        if info is None:
            return Status.MISSING
        if info.source != Status.GENERATED:
            return Status.RECORDED
        language = self.catalog.language(lang)
        try:
            text = self.catalog.spoken(lang, name)
        except UnknownPrompt:  # a keyed variant whose template lost its keys
            text = None
        if (
            text is None
            or info.text_sha256 != text_sha256(text)
            or info.voice != language.voice
            or info.pipeline != PIPELINE_VERSION
        ):
            return Status.OUTDATED
        return Status.GENERATED

    def names(self) -> tuple[str, ...]:
        """PROMPT_NAMES, then the keyed variants the library holds in any language."""
        keyed = {p.stem for base in KEYED_PROMPTS for p in self.root.glob(f"*/{base}-k??.wav")}
        return PROMPT_NAMES + tuple(sorted(n for n in keyed if _is_name(n)))

    def coverage(self) -> Coverage:
        names = self.names()
        cells = {(lang, name): self.status(lang, name) for lang in self.catalog.codes for name in names}
        return Coverage(languages=self.catalog.codes, names=names, cells=cells)

    def build(
        self,
        langs: Iterable[str] | None = None,
        *,
        force: bool = False,
        keys: Iterable[tuple[str, str]] = (),
        progress: ProgressCallback | None = None,
        workers: int = audio.CONCURRENCY,
    ) -> BuildReport:
        """Generate missing and outdated prompts; recorded ones only with ``force``.
        ``keys`` adds the notices' variants for these (allow, refuse) key sets."""
        variants = [keyed_name(base, *pair) for pair in keys for base in KEYED_PROMPTS]
        names = tuple(dict.fromkeys(self.names() + tuple(variants)))
        if langs is None:
            codes = [c for c, lang in self.catalog.languages.items() if lang.voice]
        else:
            codes = list(dict.fromkeys(langs))
            for code in codes:
                if not self.catalog.language(code).voice:
                    raise UsageError(
                        f"language {code!r} has no espeak-ng voice in the catalog; "
                        f"import recorded prompts with `callvault prompts import {code} NAME FILE`"
                    )
        todo: list[tuple[str, str, str, str]] = []
        up_to_date = 0
        kept: list[tuple[str, str]] = []
        for code in codes:
            language = self.catalog.language(code)
            for name in names:
                text = self.catalog.spoken(code, name)
                if text is None:
                    continue
                status = self.status(code, name)
                if status is Status.GENERATED and not force:
                    up_to_date += 1
                elif status is Status.RECORDED and not force:
                    kept.append((code, name))
                else:
                    assert language.voice is not None
                    todo.append((code, name, text, language.voice))

        def job(item: tuple[str, str, str, str]) -> None:
            code, name, text, voice = item
            master = tts.generate(text, voice)
            info = PromptInfo(
                source=Status.GENERATED, duration_s=round(audio.duration_s(master), 3), created=_now(),
                voice=voice, text_sha256=text_sha256(text),
            )
            self._store(code, name, master, info)

        done = _run_parallel(job, todo, workers, progress, "generated")
        return BuildReport(
            generated=tuple((code, name) for code, name, *_ in done), up_to_date=up_to_date, kept_recorded=tuple(kept)
        )

    def import_prompt(
        self, lang: str, name: str, file: str | os.PathLike[str], *, max_duration: float = audio.MAX_DURATION_S
    ) -> PromptInfo:
        """Store an administrator's recording as the master for ``lang``/``name``."""
        self.catalog.language(check_lang(lang))
        check_name(name)
        master = audio.prepare(file, max_duration=max_duration)
        digest = hashlib.sha256()
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 16), b""):
                digest.update(chunk)
        info = PromptInfo(
            source=Status.RECORDED, duration_s=round(audio.duration_s(master), 3), created=_now(),
            imported_from=os.path.basename(os.fspath(file)), source_sha256=digest.hexdigest(),
        )
        self._store(lang, name, master, info)
        return info

    def install(
        self,
        sounds_dir: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
        workers: int = audio.CONCURRENCY,
    ) -> InstallReport:
        """Publish every master in every format under ``<sounds_dir>/callvault``, atomically."""
        sounds = Path(sounds_dir)
        if not sounds.is_dir():
            raise UsageError(
                f"{sounds}: no such directory (give Asterisk's sounds directory, astdatadir/sounds, "
                "e.g. /usr/share/asterisk/sounds)"
            )
        items = [
            (lang, name)
            for lang in self.catalog.codes
            for name in self.names()
            if self.master_path(lang, name).is_file()
        ]
        if not items:
            raise UsageError(f"nothing to install: {self.root} holds no prompts (run `callvault prompts build`)")
        link = sounds / SOUNDS_SUBDIR
        with _locked(sounds):
            if os.path.lexists(link) and not link.is_symlink() and not link.is_dir():
                raise UsageError(f"{link} exists and is not a directory; move it away")
            _remove_stale_stages(sounds, link)
            stage = Path(tempfile.mkdtemp(prefix=_STAGE_PREFIX, dir=sounds))
            try:
                records: list[dict] = []

                def job(item: tuple[str, str]) -> None:
                    lang, name = item
                    source, version = self._origin(lang, name)
                    encoded = audio.encode_all(audio.read_master(self.master_path(lang, name)))
                    (stage / lang).mkdir(mode=0o755, exist_ok=True)
                    for ext, data in encoded.items():
                        _write_file(stage / lang / f"{name}.{ext}", data)
                        records.append(file_record(lang, name, ext, data, source, version))

                _run_parallel(job, items, workers, progress, "installed")
                _write_file(stage / MANIFEST_NAME, manifest_bytes(records, _now()))
                for d in [stage, *(p for p in stage.iterdir() if p.is_dir())]:
                    d.chmod(0o755)  # mkdtemp makes 0700; Asterisk runs as its own user
                    _fsync_dir(d)
                _swap(link, stage)
            except BaseException:
                if not (link.is_symlink() and os.readlink(link) == stage.name):
                    shutil.rmtree(stage, ignore_errors=True)
                raise
        return InstallReport(path=str(link), prompts=tuple(items), files=len(items) * len(audio.FORMATS))

    def _origin(self, lang: str, name: str) -> tuple[str, str]:
        """(source, version) for the manifest: what the master was made from."""
        info = self.info(lang, name)
        if info is not None and info.source == Status.GENERATED and info.text_sha256:
            return Status.GENERATED, f"text-sha256:{info.text_sha256}"
        if info is not None and info.source_sha256:
            return Status.RECORDED, f"source-sha256:{info.source_sha256}"
        master = hashlib.sha256(self.master_path(lang, name).read_bytes()).hexdigest()
        return Status.RECORDED, f"master-sha256:{master}"

    def _store(self, lang: str, name: str, master: AudioSegment, info: PromptInfo) -> None:
        target = self.master_path(lang, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        sidecar = target.with_suffix(".json")
        tmp_master = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        tmp_sidecar = sidecar.with_name(f".{sidecar.name}.{secrets.token_hex(4)}.tmp")
        try:
            audio.write_master(master, tmp_master)
            tmp_sidecar.write_text(json.dumps(asdict(info), indent=2, sort_keys=True) + "\n", encoding="utf-8")
            # Drop the old sidecar first: a crash in between leaves a master without
            # one, which counts as recorded and is never overwritten by mistake.
            sidecar.unlink(missing_ok=True)
            os.replace(tmp_master, target)
            os.replace(tmp_sidecar, sidecar)
        finally:
            tmp_master.unlink(missing_ok=True)
            tmp_sidecar.unlink(missing_ok=True)


_T = TypeVar("_T", bound=tuple)


def _is_name(name: str) -> bool:
    try:
        check_name(name)
    except UnknownPrompt:
        return False
    return True


def _run_parallel(
    job: Callable[[_T], None], items: list[_T], workers: int, progress: ProgressCallback | None, action: str
) -> list[_T]:
    """Run ``job`` over ``items`` in threads (each mostly waits on an espeak-ng or
    ffmpeg subprocess); the first failure cancels the rest and is raised."""
    done: list[_T] = []
    if not items:
        return done
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(job, item): item for item in items}
        try:
            for fut in concurrent.futures.as_completed(futures):
                fut.result()
                item = futures[fut]
                done.append(item)
                if progress is not None:
                    progress(Progress(len(done), len(items), item[0], item[1], action))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return done


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, 0o644)  # whatever the umask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap(link: Path, stage: Path) -> None:
    sounds = link.parent
    if link.is_symlink() or not os.path.lexists(link):
        old = os.readlink(link) if link.is_symlink() else None
        tmp_link = sounds / f"{_STAGE_PREFIX}link-{secrets.token_hex(4)}"
        os.symlink(stage.name, tmp_link)
        try:
            os.replace(tmp_link, link)  # the atomic step
        except BaseException:
            tmp_link.unlink(missing_ok=True)
            raise
        _fsync_dir(sounds)
        if old and "/" not in old and old.startswith(_STAGE_PREFIX):
            shutil.rmtree(sounds / old, ignore_errors=True)
    else:
        # A real directory from before (made by hand): moved aside, then linked.
        # Only this first switch has a moment with no callvault/ at all.
        aside = sounds / f"{_STAGE_PREFIX}old-{secrets.token_hex(4)}"
        os.rename(link, aside)
        os.symlink(stage.name, link)
        _fsync_dir(sounds)
        shutil.rmtree(aside, ignore_errors=True)


def _remove_stale_stages(sounds: Path, link: Path) -> None:
    """Leftovers of installs that died before their swap (we hold the lock)."""
    current = os.readlink(link) if link.is_symlink() else None
    for entry in sounds.iterdir():
        if entry.name.startswith(_STAGE_PREFIX) and entry.name != current:
            if entry.is_symlink() or not entry.is_dir():
                entry.unlink(missing_ok=True)
            else:
                shutil.rmtree(entry, ignore_errors=True)


class _locked:
    """An exclusive flock on ``<sounds_dir>/.callvault.lock`` for one install at a time."""

    def __init__(self, sounds: Path) -> None:
        self.path = sounds / ".callvault.lock"
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise AnnouncementError(f"another install into {self.path.parent} is running") from None

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
