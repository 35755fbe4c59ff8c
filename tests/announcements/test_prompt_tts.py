import pytest

from announcements import audio, tts
from announcements.catalog import builtin_catalog
from announcements.errors import SynthesisError


@pytest.mark.parametrize("lang", ["en", "af", "tn"])
def test_generated_notice_is_valid_in_every_format(lang, check_formats):
    language = builtin_catalog().language(lang)
    master = tts.generate(language.texts["notice-opt-in"], language.voice)
    # speech peaks high above its RMS: the peak ceiling usually sets the gain
    assert master.dBFS <= audio.TARGET_RMS_DBFS + 0.1
    assert master.max_dBFS <= audio.PEAK_CEILING_DBFS + 0.01
    assert (
        master.dBFS == pytest.approx(audio.TARGET_RMS_DBFS, abs=0.1)
        or master.max_dBFS == pytest.approx(audio.PEAK_CEILING_DBFS, abs=0.1)
    )
    assert master.dBFS > audio.TARGET_RMS_DBFS - 6
    seconds = check_formats(audio.encode_all(master))
    assert 3 < seconds < 20


def test_text_cannot_become_options_or_shell(tmp_path):
    marker = tmp_path / "pwned"
    master = tts.generate(f"-w {marker} ; touch {marker} $(touch {marker})", "en")
    assert audio.duration_s(master) > 1
    assert not marker.exists()


def test_unknown_voice_is_a_clear_error():
    with pytest.raises(SynthesisError, match="espeak-ng has no voice 'zu'"):
        tts.generate("Sawubona", "zu")


def test_empty_text_and_option_like_voice():
    with pytest.raises(SynthesisError, match="empty"):
        tts.generate("  ", "en")
    with pytest.raises(SynthesisError, match="invalid espeak-ng voice"):
        tts.generate("hello", "--help")


def test_missing_espeak_is_named(monkeypatch):
    monkeypatch.setattr(tts.shutil, "which", lambda name: None)
    with pytest.raises(SynthesisError, match="apt-get install espeak-ng"):
        tts.generate("hello", "en")
