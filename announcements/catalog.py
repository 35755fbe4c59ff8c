"""The prompt catalog: which prompts exist, their texts per language, and fallbacks.

The built-in catalog (``catalog.toml`` beside this module) covers English,
Afrikaans, Setswana, Spanish, French, German and Portuguese. An administrator's
catalog file has the same format and is merged over it: a language's ``name``,
``voice`` and ``fallback`` replace the built-in ones, its ``prompts`` replace texts
one by one, and new languages may be added. ``voice = ""`` switches speech
synthesis off for a language (its prompts must then be recorded).

Prompt names are stable identifiers: the consent flow plays
``callvault/<lang>/<name>`` and never a text. Language codes end up in file paths,
so both are checked against strict patterns here, once.

The notices that ask for a key are templates: ``{allow}`` and ``{refuse}`` stand for
the rule's keys. ``Language.texts`` holds them spoken with the default keys (1 and
2) under the plain names; a rule with other keys plays a keyed variant,
``<name>-k<allow><refuse>`` (e.g. ``notice-opt-in-k56``), whose text is the same
template with its keys (``Catalog.spoken``).
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from storage.prompt_names import DEFAULT_KEYS, KEYED_RE, split_keyed

from .errors import CatalogError, UnknownPrompt

PROMPT_NAMES: tuple[str, ...] = (
    "notice-opt-in",
    "notice-opt-out",
    "notice-implied",
    "will-record",
    "will-not-record",
    "recording-stopped",
    "recording-paused",
    "recording-resumed",
    "invalid-choice",
)
DEFAULT_LANGUAGE = "en"
BUILTIN_FILE = "announcements/catalog.toml"
# Package data beside this module (read as a file: importlib.resources would load
# tempfile, shutil and zipfile into every classic AGI process).
_BUILTIN_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "catalog.toml")

LANG_RE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})*")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_VOICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+./-]{0,63}")
_MAX_TEXT = 500
_LANG_KEYS = ("name", "voice", "fallback", "prompts")


@dataclass(frozen=True)
class Language:
    """One language of the prompt catalog: its voice, fallback and prompt texts."""

    code: str
    name: str
    voice: str | None  # espeak-ng voice; None: prompts must be recorded
    fallback: tuple[str, ...]
    texts: Mapping[str, str]  # spoken with the default keys
    templates: Mapping[str, str] = field(default_factory=dict)  # as written, {allow}/{refuse} unfilled


@dataclass(frozen=True)
class Catalog:
    """The prompt catalog: the built-in languages with an administrator's file merged over."""

    languages: Mapping[str, Language]
    files: tuple[str, ...]  # where it came from, built-in first

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self.languages)

    def language(self, code: str) -> Language:
        try:
            return self.languages[code]
        except KeyError:
            raise UnknownPrompt(
                f"unknown language {code!r}; the catalog has {', '.join(self.languages)} "
                "(add [languages.<code>] to your catalog file to define another)"
            ) from None

    def text(self, code: str, name: str) -> str | None:
        return self.spoken(code, name)

    def spoken(self, code: str, name: str) -> str | None:
        """What ``name`` (a keyed variant included) says in ``code``; None when the
        language has no text for it. Raises UnknownPrompt for a keyed variant whose
        template does not name the keys (it would tell callers the wrong ones)."""
        base, keys = split_keyed(check_name(name))
        language = self.language(code)
        if keys == DEFAULT_KEYS:
            return language.texts.get(base)
        template = language.templates.get(base)
        if template is None:
            return None
        needed = ("{allow}", "{refuse}") if base == "notice-opt-in" else ("{refuse}",)
        missing = [p for p in needed if p not in template]
        if missing:
            raise UnknownPrompt(
                f"{name} cannot be made for language {code!r}: its {base} text names no "
                f"{' and '.join(missing)} (it would say the default keys); write the keys as "
                f"{', '.join(needed)} in [languages.{code}.prompts] of your catalog file")
        return fill_keys(template, *keys)

    def fallback_chain(self, lang: str) -> tuple[str, ...]:
        """Languages to try for ``lang``, best first, always ending in ``en``.

        ``lang`` may be a tag the catalog lacks, such as ``af-ZA`` or ``af_ZA``: its
        region is dropped until a known language remains. A language the catalog
        does not know at all gets just ``("en",)``: the caller still hears a notice.
        """
        code = lang.strip().lower().replace("_", "-")
        while code and code not in self.languages:
            code = code.rpartition("-")[0]
        chain: list[str] = []

        def visit(c: str) -> None:
            if c in chain or c not in self.languages:
                return
            chain.append(c)
            for nxt in self.languages[c].fallback:
                visit(nxt)

        if code:
            visit(code)
        if DEFAULT_LANGUAGE not in chain:
            chain.append(DEFAULT_LANGUAGE)
        return tuple(chain)


def check_lang(code: str) -> str:
    """Raise UnknownPrompt unless ``code`` is a well-formed language code."""
    if not isinstance(code, str) or not LANG_RE.fullmatch(code):
        raise UnknownPrompt(f"invalid language code {code!r} (use a lower-case tag such as 'af' or 'pt-br')")
    return code


def fill_keys(template: str, allow: str, refuse: str) -> str:
    return template.replace("{allow}", allow).replace("{refuse}", refuse)


def check_name(name: str) -> str:
    """Raise UnknownPrompt unless ``name`` is one of PROMPT_NAMES or a keyed variant
    of a notice (two different digits)."""
    m = KEYED_RE.fullmatch(name) if isinstance(name, str) else None
    if m and m.group(2) != m.group(3):
        return name
    if name not in PROMPT_NAMES:
        import difflib  # only for a mistake: not in every classic AGI process

        hint = difflib.get_close_matches(str(name), PROMPT_NAMES, n=1)
        fix = f"did you mean {hint[0]!r}?" if hint else f"known prompts: {', '.join(PROMPT_NAMES)}"
        raise UnknownPrompt(f"unknown prompt name {name!r} ({fix})")
    return name


@functools.cache
def builtin_catalog() -> Catalog:
    return _build([(BUILTIN_FILE, _parse(BUILTIN_FILE, _builtin_text()))])


def load_catalog(path: str | os.PathLike[str] | None = None) -> Catalog:
    """The built-in catalog, with the administrator's file at ``path`` merged over it."""
    if path is None:
        return builtin_catalog()
    file = os.fspath(path)
    try:
        with open(file, encoding="utf-8") as f:
            raw = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CatalogError(file, "", None, f"cannot be read: {e}", "check the path and that it is UTF-8 text") from None
    return _build([(BUILTIN_FILE, _parse(BUILTIN_FILE, _builtin_text())), (file, _parse(file, raw))])


def _builtin_text() -> str:
    with open(_BUILTIN_PATH, encoding="utf-8") as f:
        return f.read()


def fallback_chain(lang: str, catalog: Catalog | None = None) -> tuple[str, ...]:
    if lang == DEFAULT_LANGUAGE:  # in every catalog, falling back to nothing: no need to read one
        return (DEFAULT_LANGUAGE,)
    return (catalog or builtin_catalog()).fallback_chain(lang)


def _parse(file: str, raw: str) -> dict[str, dict[str, Any]]:
    """Check one file's shape; return {code: {field: value}} with values checked."""
    try:
        doc = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as e:
        raise CatalogError(file, "", None, f"is not valid TOML: {e}", "fix the syntax at the place shown") from None
    out: dict[str, dict[str, Any]] = {}
    for key, value in doc.items():
        if key != "languages":
            raise CatalogError(file, key, value, "unknown top-level key", "the catalog holds only [languages.<code>] tables")
    languages = doc.get("languages", {})
    if not isinstance(languages, dict):
        raise CatalogError(file, "languages", languages, "must be a table", "write [languages.<code>] sections")
    for code, table in languages.items():
        base = f"languages.{code}"
        if not LANG_RE.fullmatch(code):
            raise CatalogError(file, base, code, "is not a valid language code", "use a lower-case tag such as 'af' or 'pt-br'")
        if not isinstance(table, dict):
            raise CatalogError(file, base, table, "must be a table", f"write [languages.{code}] with name, voice, fallback, prompts")
        out[code] = _parse_language(file, code, table)
    return out


def _parse_language(file: str, code: str, table: dict[str, Any]) -> dict[str, Any]:
    base = f"languages.{code}"
    lang: dict[str, Any] = {}
    for key, value in table.items():
        k = f"{base}.{key}"
        if key not in _LANG_KEYS:
            raise CatalogError(file, k, value, "unknown key", f"allowed keys: {', '.join(_LANG_KEYS)}")
        if key == "name":
            if not isinstance(value, str) or not value.strip() or len(value) > 64:
                raise CatalogError(file, k, value, "must be a non-empty string of at most 64 characters")
            lang["name"] = value.strip()
        elif key == "voice":
            if not isinstance(value, str) or (value and not _VOICE_RE.fullmatch(value)):
                raise CatalogError(
                    file, k, value, "is not an espeak-ng voice name",
                    "see `espeak-ng --voices`; use \"\" for a language whose prompts are all recorded",
                )
            lang["voice"] = value or None
        elif key == "fallback":
            if not isinstance(value, list) or not all(isinstance(v, str) and LANG_RE.fullmatch(v) for v in value):
                raise CatalogError(file, k, value, "must be a list of language codes", 'e.g. fallback = ["en"]')
            if code in value:
                raise CatalogError(file, k, value, "a language cannot fall back to itself", f"remove {code!r}")
            if code == DEFAULT_LANGUAGE and value:
                raise CatalogError(file, k, value, f"{DEFAULT_LANGUAGE!r} is the last resort and cannot fall back", "use fallback = []")
            lang["fallback"] = tuple(value)
        else:
            lang["prompts"] = _parse_prompts(file, k, value)
    return lang


def _parse_prompts(file: str, base: str, table: Any) -> dict[str, str]:
    if not isinstance(table, dict):
        raise CatalogError(file, base, table, "must be a table", f"write [{base}] with one line per prompt")
    texts: dict[str, str] = {}
    for name, text in table.items():
        k = f"{base}.{name}"
        if name not in PROMPT_NAMES:
            import difflib

            hint = difflib.get_close_matches(name, PROMPT_NAMES, n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else f"known prompts: {', '.join(PROMPT_NAMES)}"
            raise CatalogError(file, k, text, "unknown prompt name", fix)
        if not isinstance(text, str) or not text.strip():
            raise CatalogError(file, k, text, "must be a non-empty string", "write the words to be spoken")
        if len(text) > _MAX_TEXT or any(ord(c) < 32 and c not in "\t\n" for c in text):
            raise CatalogError(file, k, text[:40] + "...", f"must be plain text of at most {_MAX_TEXT} characters", "shorten it")
        texts[name] = " ".join(text.split())
    return texts


def _build(parsed: list[tuple[str, dict[str, dict[str, Any]]]]) -> Catalog:
    merged: dict[str, dict[str, Any]] = {}
    fallback_from: dict[str, str] = {}
    for file, langs in parsed:
        for code, fields in langs.items():
            into = merged.setdefault(code, {"name": code, "voice": None, "fallback": (), "prompts": {}})
            for key, value in fields.items():
                if key == "prompts":
                    into["prompts"] = {**into["prompts"], **value}
                else:
                    into[key] = value
            if "fallback" in fields:
                fallback_from[code] = file
    if DEFAULT_LANGUAGE not in merged:
        raise CatalogError(parsed[0][0], f"languages.{DEFAULT_LANGUAGE}", None, "is missing", "every catalog needs English")
    for code, fields in merged.items():
        for target in fields["fallback"]:
            if target not in merged:
                raise CatalogError(
                    fallback_from[code], f"languages.{code}.fallback", list(fields["fallback"]),
                    f"names unknown language {target!r}", f"define [languages.{target}] or remove it",
                )
    languages = {
        code: Language(
            code=code,
            name=f["name"],
            voice=f["voice"],
            fallback=f["fallback"],
            texts=MappingProxyType({n: fill_keys(f["prompts"][n], *DEFAULT_KEYS)
                                    for n in PROMPT_NAMES if n in f["prompts"]}),
            templates=MappingProxyType({n: f["prompts"][n] for n in PROMPT_NAMES if n in f["prompts"]}),
        )
        for code, f in merged.items()
    }
    return Catalog(languages=MappingProxyType(languages), files=tuple(file for file, _ in parsed))
