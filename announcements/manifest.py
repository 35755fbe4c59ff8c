"""The install manifest: what exactly each installed prompt file is.

``install`` writes ``callvault-prompts.json`` into the installed set, beside the
language directories, in the same atomic step as the files::

    {"manifest": 1, "installed_at": "...",
     "files": [{"path": "en/notice-opt-in.ulaw", "prompt": "notice-opt-in", "language": "en",
                "format": "ulaw", "sha256": "...", "bytes": 23040, "source": "generated",
                "version": "text-sha256:..."}, ...]}

``version`` names what the audio was made from: ``text-sha256:<hex>`` (the SHA-256 of
the UTF-8 text espeak-ng spoke), ``source-sha256:<hex>`` (the file an administrator
imported) or ``master-sha256:<hex>`` (a master of unknown origin, without sidecar).
A notice that names keys also has ``"keys": {"allow": "5", "refuse": "6"}``: the keys
its text was filled with (a recorded one: the keys its name promises).

The manifest is what counts as installed: a set without one (a directory made by
hand, or an install from before manifests) has no prompt that the consent flow
will play as a notice.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from storage.prompt_names import KEYED_PROMPTS, split_keyed
from storage.record import Record

from .catalog import check_lang, check_name
from .errors import PromptNotFound

MANIFEST_NAME = "callvault-prompts.json"
MANIFEST_VERSION = 1
SOUNDS_SUBDIR = "callvault"


class InstalledPrompt(Record):
    """One prompt of an installed set: the sound name Asterisk plays and its proof."""

    sound: str  # callvault/<lang>/<name>, as STREAM FILE and GET DATA take it
    name: str
    language: str
    version: str
    sha256: Mapping[str, str]  # format (file extension) -> SHA-256 of the installed file


def file_record(lang: str, name: str, fmt: str, data: bytes, source: str, version: str) -> dict[str, Any]:
    record = {"path": f"{lang}/{name}.{fmt}", "prompt": name, "language": lang, "format": fmt,
              "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "source": source, "version": version}
    base, (allow, refuse) = split_keyed(name)
    if base in KEYED_PROMPTS:
        record["keys"] = {"allow": allow, "refuse": refuse}
    return record


def manifest_bytes(files: Iterable[Mapping[str, Any]], installed_at: str) -> bytes:
    doc = {"manifest": MANIFEST_VERSION, "installed_at": installed_at,
           "files": sorted(files, key=lambda f: f["path"])}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")


class Manifest:
    """The parsed manifest of one installed set (``<sounds_dir>/callvault``)."""

    def __init__(self, root: Path, prompts: Mapping[tuple[str, str], InstalledPrompt]) -> None:
        self.root = root
        self.prompts = prompts

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> Manifest | None:
        """The manifest under ``root``; None when there is none or it cannot be read."""
        root = Path(root)
        try:
            doc = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
            files = doc["files"] if doc.get("manifest") == MANIFEST_VERSION else None
            grouped: dict[tuple[str, str], dict[str, Any]] = {}
            for f in files:
                key = (f["language"], f["prompt"])
                entry = grouped.setdefault(key, {"version": f["version"], "sha256": {}})
                entry["sha256"][f["format"]] = f["sha256"]
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None
        prompts = {
            (lang, name): InstalledPrompt(sound=f"{SOUNDS_SUBDIR}/{lang}/{name}", name=name, language=lang,
                                          version=e["version"], sha256=dict(sorted(e["sha256"].items())))
            for (lang, name), e in grouped.items()
        }
        return cls(root, prompts)

    def find(self, chain: Iterable[str], name: str) -> InstalledPrompt | None:
        for lang in chain:
            found = self.prompts.get((lang, name))
            if found is not None:
                return found
        return None

    def damage(self, prompt: InstalledPrompt) -> str | None:
        """Why the files of ``prompt`` are not what the install wrote, or None."""
        for fmt, digest in prompt.sha256.items():
            path = self.root / prompt.language / f"{prompt.name}.{fmt}"
            try:
                actual = hashlib.sha256(path.read_bytes()).hexdigest()
            except FileNotFoundError:
                return f"{path} is missing"
            except OSError as e:
                return f"{path} cannot be read ({e.strerror})"
            if actual != digest:
                return f"{path} changed since it was installed"
        return None


def resolve(lang_chain: Iterable[str], name: str, sounds_dir: str | os.PathLike[str],
            manifest: Manifest | None = None) -> InstalledPrompt:
    """The installed ``name`` for the first language in ``lang_chain`` (see
    ``fallback_chain``) that the installed set's manifest lists; raises
    PromptNotFound when none has it or nothing is installed. ``manifest`` saves
    reading it again."""
    if isinstance(lang_chain, str):
        raise TypeError("lang_chain must be a sequence of languages, e.g. fallback_chain('af')")
    chain = tuple(check_lang(lang) for lang in lang_chain)
    check_name(name)
    if manifest is None:
        manifest = Manifest.load(Path(sounds_dir) / SOUNDS_SUBDIR)
    found = manifest.find(chain, name) if manifest is not None else None
    if found is None:
        raise PromptNotFound(chain, name, os.fspath(sounds_dir))
    return found
