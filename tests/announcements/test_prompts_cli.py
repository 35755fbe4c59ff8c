import argparse
import io
import subprocess
import sys

import pytest

from announcements import cli
from announcements.library import Progress
from appliance.cli import main as callvault


def run(argv, capsys):
    code = callvault(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_wires_into_a_parent_parser():
    parser = argparse.ArgumentParser(prog="callvault")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_prompts_commands(sub, library_default="/srv/prompts")
    args = parser.parse_args(["prompts", "install", "--sounds-dir", "/usr/share/asterisk/sounds"])
    assert args.fn is cli.run_prompts
    assert args.library == "/srv/prompts" and args.sounds_dir == "/usr/share/asterisk/sounds"
    args = parser.parse_args(["prompts", "build", "--lang", "af", "--lang", "tn"])
    assert args.lang == ["af", "tn"] and args.force is False


def test_list_shows_coverage_and_fallbacks(library, stereo_mp3, capsys):
    library.import_prompt("af", "will-record", stereo_mp3)
    code, out, err = run(["prompts", "list", "--library", str(library.root)], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    header = lines[1].split()
    assert header[:4] == ["prompt", "en", "af", "tn"]
    row = dict(zip(header, next(ln for ln in lines if ln.startswith("will-record ")).split()))
    assert (row["en"], row["af"], row["es"]) == ("gen", "rec", "---")
    assert "af (Afrikaans, voice af): fallback af -> en" in out
    assert "es (Español, voice es): fallback es -> en; lacks notice-opt-in" in out


def test_build_one_line_per_prompt_when_not_a_tty(tmp_path, capsys):
    code, out, err = run(["prompts", "build", "--lang", "de", "--library", str(tmp_path / "lib")], capsys)
    assert code == 0
    assert "generated 9 prompt(s)" in out
    lines = err.splitlines()
    assert len(lines) == 9 and all(ln.startswith("generated de/") for ln in lines)
    assert lines[-1].endswith("(9/9)")


def test_progress_bar_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = cli._ProgressPrinter(stream)
    for i in range(1, 4):
        bar(Progress(i, 3, "af", "will-record", "generated"))
    bar.finish()
    text = stream.getvalue()
    assert text.count("\r[") == 3 and "3/3 af/will-record" in text and text.endswith("\n")
    assert "#" * cli._ProgressPrinter.WIDTH in text


def test_import_then_install(library, stereo_mp3, sounds_dir, capsys):
    lib = str(library.root)
    code, out, _ = run(["prompts", "import", "tn", "will-record", str(stereo_mp3), "--library", lib], capsys)
    assert code == 0 and "imported tn/will-record from notice.mp3" in out
    code, out, _ = run(["prompts", "install", "--sounds-dir", str(sounds_dir), "--library", lib], capsys)
    assert code == 0 and f"installed 27 prompt(s), 162 files, in {sounds_dir}/callvault" in out
    assert (sounds_dir / "callvault/tn/will-record.g722").is_file()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["prompts", "import", "af", "will-record", "{empty}"], "{empty}: is empty (0 bytes)"),
        (["prompts", "import", "af", "will-record", "{text}"], "{text}: is not audio that ffmpeg can decode"),
        (["prompts", "import", "zu", "will-record", "{text}"], "unknown language 'zu'"),
        (["prompts", "import", "af", "will-recrod", "{text}"], "did you mean 'will-record'"),
        (["prompts", "install", "--sounds-dir", "{missing}"], "{missing}: no such directory"),
        (["prompts", "list", "--catalog", "{badcat}"], "{badcat}: languages.af.voice = 3: is not an espeak-ng voice"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, words):
    paths = {
        "empty": tmp_path / "empty.wav",
        "text": tmp_path / "notes.wav",
        "missing": tmp_path / "no-such-dir",
        "badcat": tmp_path / "prompts.toml",
    }
    paths["empty"].write_bytes(b"")
    paths["text"].write_text("not audio\n")
    paths["badcat"].write_text("[languages.af]\nvoice = 3\n")
    fill = {k: str(v) for k, v in paths.items()}
    argv = [a.format(**fill) for a in argv] + ["--library", str(tmp_path / "lib")]
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("callvault prompts: error: ")
    assert words.format(**fill) in err


def test_as_a_program(tmp_path):
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "prompts", "import", "en", "will-record", str(empty),
         "--library", str(tmp_path / "lib")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"callvault prompts: error: {empty}: is empty (0 bytes)\n"
    usage = subprocess.run([sys.executable, "-m", "appliance", "prompts"], capture_output=True, text=True)
    assert usage.returncode == 2 and "{build,import,install,list}" in usage.stderr
