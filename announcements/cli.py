"""``callvault prompts ...``: build, import, install and list the prompts.

The appliance's CLI (appliance/cli/prompts.py) wires this in with
``add_prompts_commands(subparsers)``; each parsed namespace carries ``fn=run_prompts``,
which returns the exit code:
0 done, 2 bad input (a bad audio file or catalog, an unknown language or prompt,
a missing directory; shown as one line), 1 anything else that went wrong (espeak-ng or ffmpeg failing, disk).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from .catalog import PROMPT_NAMES, load_catalog
from .errors import AnnouncementError, BadAudio, CatalogError, PromptNotFound, UsageError
from .library import DEFAULT_LIBRARY, Progress, PromptLibrary, Status

DEFAULT_CATALOG = "/etc/callvault/prompts.toml"  # read when present, unless --catalog says otherwise
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
_BAD_INPUT = (BadAudio, CatalogError, UsageError, PromptNotFound)
_CELL = {Status.GENERATED: "gen", Status.RECORDED: "rec", Status.OUTDATED: "old", Status.MISSING: "---"}


def add_prompts_commands(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    *,
    library_default: str = DEFAULT_LIBRARY,
    catalog_default: str | None = None,
) -> argparse.ArgumentParser:
    """Add ``prompts`` with its sub-commands to ``subparsers``; returns its parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--library", metavar="DIR", default=library_default,
        help=f"the prompt library (masters and their sources; default {library_default})",
    )
    common.add_argument(
        "--catalog", metavar="FILE", default=catalog_default,
        help=f"administrator's catalog merged over the built-in texts (default {DEFAULT_CATALOG} if it exists)",
    )
    prompts = subparsers.add_parser("prompts", help="build, import, install and list the recording-notice prompts")
    prompts.set_defaults(fn=run_prompts)
    sub = prompts.add_subparsers(dest="prompts_command", required=True)

    build = sub.add_parser("build", parents=[common], help="generate missing or outdated prompts with espeak-ng")
    build.add_argument("--lang", action="append", metavar="L", help="only this language (repeatable)")
    build.add_argument("--force", action="store_true", help="also regenerate prompts that were recorded")
    build.add_argument("--keys", action="append", metavar="AR", type=_key_pair, default=[],
                       help="also make the notices for a rule's allow and refuse keys, e.g. 56 (repeatable)")

    imp = sub.add_parser("import", parents=[common], help="import a recorded prompt from any audio file")
    imp.add_argument("lang", metavar="LANG", help="language code, e.g. af")
    imp.add_argument("name", metavar="NAME", help=f"prompt name: {', '.join(PROMPT_NAMES)}")
    imp.add_argument("file", metavar="FILE", help="mp3, m4a, ogg, wav or anything else ffmpeg reads")

    install = sub.add_parser("install", parents=[common], help="write every prompt in every Asterisk format, atomically")
    install.add_argument(
        "--sounds-dir", metavar="DIR", required=True,
        help="Asterisk's sounds directory (astdatadir/sounds, e.g. /usr/share/asterisk/sounds)",
    )

    sub.add_parser("list", parents=[common], help="show which languages have which prompts")
    return prompts


def run_prompts(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        catalog_path = args.catalog
        if catalog_path is None and os.path.exists(DEFAULT_CATALOG):
            catalog_path = DEFAULT_CATALOG
        library = PromptLibrary(args.library, load_catalog(catalog_path))
        command = args.prompts_command
        if command == "build":
            return _build(library, args, out, err)
        if command == "import":
            return _import(library, args, out)
        if command == "install":
            return _install(library, args, out, err)
        return _list(library, out)
    except _BAD_INPUT as e:
        print(f"callvault prompts: error: {e}", file=err)
        return EXIT_BAD_INPUT
    except (AnnouncementError, OSError) as e:
        print(f"callvault prompts: failed: {e}", file=err)
        return EXIT_FAILED


def _key_pair(text: str) -> tuple[str, str]:
    if len(text) != 2 or not text.isdigit() or text[0] == text[1] or not text.isascii():
        raise argparse.ArgumentTypeError(f"{text!r}: give the allow key then the refuse key, two different "
                                         "digits, e.g. 56")
    return text[0], text[1]


class _ProgressPrinter:
    """A one-line bar on a terminal; one plain line per prompt anywhere else."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.drawn = False

    def __call__(self, p: Progress) -> None:
        if self.tty:
            filled = self.WIDTH * p.done // p.total
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r[{bar}] {p.done}/{p.total} {p.lang}/{p.name}\033[K")
            self.drawn = True
        else:
            self.stream.write(f"{p.action} {p.lang}/{p.name} ({p.done}/{p.total})\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _build(library: PromptLibrary, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    printer = _ProgressPrinter(err)
    try:
        report = library.build(args.lang, force=args.force, keys=args.keys, progress=printer)
    finally:
        printer.finish()
    print(
        f"generated {len(report.generated)} prompt(s) in {library.root}; "
        f"{report.up_to_date} up to date, {len(report.kept_recorded)} recorded kept",
        file=out,
    )
    return EXIT_OK


def _import(library: PromptLibrary, args: argparse.Namespace, out: TextIO) -> int:
    info = library.import_prompt(args.lang, args.name, args.file)
    print(
        f"imported {args.lang}/{args.name} from {info.imported_from} ({info.duration_s:.1f} s); "
        "run `callvault prompts install --sounds-dir DIR` to publish it",
        file=out,
    )
    return EXIT_OK


def _install(library: PromptLibrary, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    printer = _ProgressPrinter(err)
    try:
        report = library.install(args.sounds_dir, progress=printer)
    finally:
        printer.finish()
    print(f"installed {len(report.prompts)} prompt(s), {report.files} files, in {report.path}", file=out)
    outdated = [k for k, v in library.coverage().cells.items() if v is Status.OUTDATED]
    if outdated:
        print(f"note: {len(outdated)} generated prompt(s) are outdated; run `callvault prompts build`", file=out)
    return EXIT_OK


def _list(library: PromptLibrary, out: TextIO) -> int:
    cov = library.coverage()
    catalog = library.catalog
    width = max(len(n) for n in cov.names)
    cols = [max(3, len(code)) for code in cov.languages]
    print(f"library: {library.root}", file=out)
    print(" ".join([f"{'prompt':<{width}}", *(f"{c:>{w}}" for c, w in zip(cov.languages, cols))]), file=out)
    for name in cov.names:
        cells = (f"{_CELL[cov.cells[lang, name]]:>{w}}" for lang, w in zip(cov.languages, cols))
        print(" ".join([f"{name:<{width}}", *cells]), file=out)
    print("gen = generated, rec = recorded, old = generated from an older text or voice, --- = missing", file=out)
    for lang in cov.languages:
        language = catalog.language(lang)
        chain = " -> ".join(catalog.fallback_chain(lang))
        missing = cov.missing(lang)
        voice = f"voice {language.voice}" if language.voice else "no voice: record its prompts"
        line = f"{lang} ({language.name}, {voice}): fallback {chain}"
        if missing:
            line += f"; lacks {', '.join(missing)}"
        print(line, file=out)
    return EXIT_OK
