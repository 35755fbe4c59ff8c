"""Errors raised by announcements. One root; callers branch on the kind.

``CatalogError`` is a mistake in a catalog file (built-in or the administrator's),
``BadAudio`` is an input file we refuse to turn into a prompt, ``UsageError`` (and
its ``UnknownPrompt``) a request that cannot be met as asked, ``SynthesisError``
is espeak-ng failing, ``PromptNotFound`` means no language in a fallback chain has
the prompt installed. Each message names the thing at fault and, where we know it,
how to fix it: they are shown to administrators as they are.
"""

from __future__ import annotations

import os


class AnnouncementError(Exception):
    """Root of every error raised by the announcements package."""


class CatalogError(AnnouncementError):
    """A catalog file is malformed: names the file, the key, the value and a fix."""

    def __init__(self, file: str, key: str, value: object, problem: str, fix: str = "") -> None:
        self.file = file
        self.key = key
        self.value = value
        self.problem = problem
        self.fix = fix
        where = f"{file}: {key}" if key else file
        shown = "" if value is None else f" = {value!r}"
        message = f"{where}{shown}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class BadAudio(AnnouncementError):
    """An audio file cannot be used as a prompt; names the file and the reason."""

    def __init__(self, file: str | os.PathLike[str], reason: str) -> None:
        self.file = os.fspath(file)
        self.reason = reason
        super().__init__(f"{self.file}: {reason}")


class SynthesisError(AnnouncementError):
    """espeak-ng is missing, refused the voice, or failed."""


class UsageError(AnnouncementError):
    """The caller asked for something impossible: a missing directory, a language
    without a voice, nothing to install."""


class UnknownPrompt(UsageError):
    """A language or prompt name that the catalog does not define."""


class PromptNotFound(AnnouncementError):
    """No language in the fallback chain has the prompt installed."""

    def __init__(self, chain: tuple[str, ...], name: str, sounds_dir: str) -> None:
        self.chain = chain
        self.name = name
        self.sounds_dir = sounds_dir
        super().__init__(
            f"prompt {name!r} is not installed for any of {', '.join(chain)} under "
            f"{sounds_dir}/callvault (run `callvault prompts install --sounds-dir {sounds_dir}`)"
        )
