import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from announcements import audio
from announcements import library as library_mod
from announcements.catalog import PROMPT_NAMES, fallback_chain, load_catalog
from announcements.errors import AnnouncementError, BadAudio, PromptNotFound, UnknownPrompt, UsageError
from announcements.library import PromptLibrary, Status, text_sha256
from announcements.manifest import MANIFEST_NAME, resolve


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_build_wrote_masters_and_sidecars(library):
    for lang in ("en", "af", "tn"):
        for name in PROMPT_NAMES:
            master = library.master_path(lang, name)
            assert audio.read_master(master).frame_rate == 16000
            meta = json.loads(master.with_suffix(".json").read_text())
            assert meta["source"] == "generated" and meta["voice"] == lang
            assert library.status(lang, name) is Status.GENERATED


def test_build_again_does_nothing_and_reports_progress(library):
    seen = []
    report = library.build(["en", "af", "tn"], progress=seen.append)
    assert report.generated == () and report.up_to_date == 27 and seen == []


def test_build_regenerates_only_changed_texts(library, tmp_path):
    f = tmp_path / "prompts.toml"
    f.write_text('[languages.af.prompts]\nwill-record = "Baie dankie. Die oproep word opgeneem."\n')
    changed = PromptLibrary(library.root, load_catalog(f))
    assert changed.status("af", "will-record") is Status.OUTDATED
    before = changed.master_path("af", "will-not-record").read_bytes()
    seen = []
    report = changed.build(["af"], progress=seen.append)
    assert report.generated == (("af", "will-record"),)
    assert [(p.done, p.total, p.lang, p.name, p.action) for p in seen] == [(1, 1, "af", "will-record", "generated")]
    assert changed.status("af", "will-record") is Status.GENERATED
    assert changed.master_path("af", "will-not-record").read_bytes() == before


def test_import_recorded_prompt_and_build_keeps_it(library, stereo_mp3):
    info = library.import_prompt("af", "will-record", stereo_mp3)
    assert info.source == "recorded" and info.imported_from == "notice.mp3"
    assert library.status("af", "will-record") is Status.RECORDED
    recorded = library.master_path("af", "will-record").read_bytes()
    report = library.build(["af"])
    assert report.kept_recorded == (("af", "will-record"),) and report.generated == ()
    assert library.master_path("af", "will-record").read_bytes() == recorded
    report = library.build(["af"], force=True)
    assert len(report.generated) == 9
    assert library.status("af", "will-record") is Status.GENERATED


def test_master_without_sidecar_counts_as_recorded(library):
    library.master_path("tn", "invalid-choice").with_suffix(".json").unlink()
    assert library.status("tn", "invalid-choice") is Status.RECORDED
    assert library.build(["tn"]).kept_recorded == (("tn", "invalid-choice"),)


def test_import_rejects_unknown_language_name_and_bad_audio(library, stereo_mp3, tmp_path):
    with pytest.raises(UnknownPrompt, match="unknown language 'zu'"):
        library.import_prompt("zu", "will-record", stereo_mp3)
    with pytest.raises(UnknownPrompt, match="did you mean 'notice-opt-in'"):
        library.import_prompt("af", "notice-optin", stereo_mp3)
    with pytest.raises(UnknownPrompt, match="invalid language code"):
        library.import_prompt("../x", "will-record", stereo_mp3)
    empty = tmp_path / "e.wav"
    empty.write_bytes(b"")
    before = library.master_path("af", "will-record").read_bytes()
    with pytest.raises(BadAudio, match="is empty"):
        library.import_prompt("af", "will-record", empty)
    assert library.master_path("af", "will-record").read_bytes() == before


def test_coverage_table(library, stereo_mp3):
    library.import_prompt("tn", "will-record", stereo_mp3)
    library.master_path("af", "recording-paused").unlink()
    cov = library.coverage()
    assert cov.languages[:3] == ("en", "af", "tn") and set(cov.languages) >= {"es", "fr", "de", "pt"}
    assert cov.cells["en", "will-record"] is Status.GENERATED
    assert cov.cells["tn", "will-record"] is Status.RECORDED
    assert cov.missing("af") == ("recording-paused",)
    assert cov.missing("es") == PROMPT_NAMES


def test_build_refuses_a_language_without_voice(tmp_path):
    f = tmp_path / "prompts.toml"
    f.write_text('[languages.zu]\nname = "isiZulu"\n')
    lib = PromptLibrary(tmp_path / "lib", load_catalog(f))
    with pytest.raises(UsageError, match="'zu' has no espeak-ng voice"):
        lib.build(["zu"])


@pytest.fixture
def small_library(library):
    """en and af only: installs are quicker."""
    shutil.rmtree(library.root / "tn")
    return library


def test_install_layout_and_permissions(library, sounds_dir, check_formats):
    seen = []
    report = library.install(sounds_dir, progress=seen.append)
    assert report.files == 27 * len(audio.FORMATS)
    assert [p.done for p in seen] == list(range(1, 28)) and {p.action for p in seen} == {"installed"}
    base = sounds_dir / "callvault"
    assert base.is_symlink()
    for lang in ("en", "af", "tn"):
        assert stat.S_IMODE((base / lang).stat().st_mode) == 0o755
        for name in PROMPT_NAMES:
            files = {ext: (base / lang / f"{name}.{ext}") for ext in audio.FORMATS}
            assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in files.values())
    check_formats({ext: (base / "af" / f"notice-opt-in.{ext}").read_bytes() for ext in audio.FORMATS})
    assert stat.S_IMODE(os.stat(base).st_mode) == 0o755
    # only the live set, its link and the lock are left in the sounds directory
    assert sorted(p.name for p in sounds_dir.iterdir()) == sorted([".callvault.lock", "callvault", os.readlink(base)])


def test_reinstall_replaces_the_set_and_removes_the_old_one(small_library, sounds_dir, stereo_mp3):
    small_library.install(sounds_dir)
    first = os.readlink(sounds_dir / "callvault")
    small_library.import_prompt("af", "will-record", stereo_mp3)
    small_library.install(sounds_dir)
    second = os.readlink(sounds_dir / "callvault")
    assert first != second and not (sounds_dir / first).exists()
    sln = (sounds_dir / "callvault/af/will-record.sln16").read_bytes()
    assert sln == audio.read_master(small_library.master_path("af", "will-record")).raw_data


@pytest.mark.parametrize("where", ["encode", "write"])
def test_failed_install_leaves_installed_prompts_untouched(small_library, sounds_dir, stereo_mp3, monkeypatch, where):
    small_library.install(sounds_dir)
    before = snapshot(sounds_dir / "callvault")
    entries = sorted(p.name for p in sounds_dir.iterdir())
    small_library.import_prompt("en", "will-record", stereo_mp3)  # the next install would change files

    calls = 0
    if where == "encode":
        real = audio.encode_all

        def failing(*args, **kwargs):
            nonlocal calls
            calls += 1
            if calls == 3:
                raise AnnouncementError("ffmpeg could not encode: simulated")
            return real(*args, **kwargs)

        monkeypatch.setattr(audio, "encode_all", failing)
        expected = "simulated"
    else:
        real_write = library_mod._write_file

        def failing_write(path, data):
            nonlocal calls
            calls += 1
            if calls == 20:
                raise OSError(28, "No space left on device")
            real_write(path, data)

        monkeypatch.setattr(library_mod, "_write_file", failing_write)
        expected = "No space left"
    with pytest.raises((AnnouncementError, OSError), match=expected):
        small_library.install(sounds_dir, workers=1)
    assert snapshot(sounds_dir / "callvault") == before
    assert sorted(p.name for p in sounds_dir.iterdir()) == entries


def test_install_replaces_a_hand_made_directory(small_library, sounds_dir):
    (sounds_dir / "callvault" / "en").mkdir(parents=True)
    (sounds_dir / "callvault" / "en" / "old.gsm").write_bytes(b"x" * 33)
    small_library.install(sounds_dir)
    assert (sounds_dir / "callvault").is_symlink()
    assert not (sounds_dir / "callvault/en/old.gsm").exists()
    assert (sounds_dir / "callvault/en/will-record.gsm").is_file()


def test_install_cleans_leftovers_of_a_crashed_install(small_library, sounds_dir):
    (sounds_dir / ".callvault-dead1234" / "en").mkdir(parents=True)
    small_library.install(sounds_dir)
    assert not (sounds_dir / ".callvault-dead1234").exists()


def test_install_needs_a_sounds_dir_and_prompts(tmp_path, library):
    with pytest.raises(UsageError, match="no such directory"):
        library.install(tmp_path / "missing")
    with pytest.raises(UsageError, match="nothing to install"):
        PromptLibrary(tmp_path / "empty-library").install(tmp_path)


def test_resolve_falls_back_from_af_to_en(small_library, sounds_dir):
    small_library.master_path("af", "will-record").unlink()
    small_library.install(sounds_dir)
    chain = fallback_chain("af")
    assert chain == ("af", "en")
    assert resolve(chain, "will-record", sounds_dir).sound == "callvault/en/will-record"
    assert resolve(chain, "notice-opt-in", sounds_dir).sound == "callvault/af/notice-opt-in"
    assert resolve(small_library.catalog.fallback_chain("af-ZA"), "notice-opt-in", sounds_dir).sound == "callvault/af/notice-opt-in"
    assert resolve(fallback_chain("es"), "notice-opt-in", sounds_dir).sound == "callvault/en/notice-opt-in"


def test_install_writes_a_manifest_of_every_file(small_library, sounds_dir, stereo_mp3):
    small_library.import_prompt("af", "will-record", stereo_mp3)
    small_library.install(sounds_dir)
    base = sounds_dir / "callvault"
    manifest = json.loads((base / MANIFEST_NAME).read_text())
    assert stat.S_IMODE((base / MANIFEST_NAME).stat().st_mode) == 0o644
    files = {f["path"]: f for f in manifest["files"]}
    on_disk = {str(p.relative_to(base)) for p in base.rglob("*.*") if p.name != MANIFEST_NAME}
    assert set(files) == on_disk and len(files) == 2 * len(PROMPT_NAMES) * len(audio.FORMATS)
    for path, f in files.items():
        data = (base / path).read_bytes()
        assert (f["sha256"], f["bytes"]) == (hashlib.sha256(data).hexdigest(), len(data))
        assert path == f"{f['language']}/{f['prompt']}.{f['format']}"
    text = small_library.catalog.language("af").texts["notice-opt-in"]
    assert files["af/notice-opt-in.ulaw"]["version"] == f"text-sha256:{text_sha256(text)}"
    assert files["af/notice-opt-in.ulaw"]["source"] == "generated"
    mp3 = hashlib.sha256(stereo_mp3.read_bytes()).hexdigest()
    assert files["af/will-record.g722"]["version"] == f"source-sha256:{mp3}"
    assert files["af/will-record.g722"]["source"] == "recorded"
    found = resolve(("af", "en"), "will-record", sounds_dir)
    assert (found.language, found.version) == ("af", f"source-sha256:{mp3}")
    assert found.sha256 == {ext: files[f"af/will-record.{ext}"]["sha256"] for ext in audio.FORMATS}


def test_a_set_without_manifest_has_no_prompts(sounds_dir):
    (sounds_dir / "callvault" / "en").mkdir(parents=True)  # made by hand
    (sounds_dir / "callvault" / "en" / "notice-implied.wav").write_bytes(b"RIFF")
    with pytest.raises(PromptNotFound):
        resolve(("en",), "notice-implied", sounds_dir)


def test_resolve_errors(sounds_dir):
    with pytest.raises(PromptNotFound, match="'will-record' is not installed for any of af, en"):
        resolve(("af", "en"), "will-record", sounds_dir)
    with pytest.raises(TypeError):
        resolve("af", "will-record", sounds_dir)
    with pytest.raises(UnknownPrompt):
        resolve(("../../etc",), "will-record", sounds_dir)
    with pytest.raises(UnknownPrompt):
        resolve(("en",), "../passwd", sounds_dir)
