import asyncio
import io
import subprocess
import wave

import pytest
from pydub import AudioSegment

from announcements import audio
from announcements.errors import AnnouncementError, BadAudio

TONE = "aevalsrc=0.3*sin(440*2*PI*t):s=44100:d=2"


def pcm_dbfs(raw: bytes, fmt: str, rate: int) -> float:
    """Decode a raw Asterisk format back with ffmpeg; the RMS level in dBFS."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-f", fmt, "-ar", str(rate), "-ac", "1", "-i", "pipe:0",
           "-f", "s16le", "-ac", "1", "pipe:1"]
    if fmt == "g722":
        cmd[6:8] = []  # G.722's rate is implied
    pcm = subprocess.run(cmd, input=raw, capture_output=True, check=True).stdout
    return AudioSegment(data=pcm, sample_width=2, frame_rate=8000, channels=1).dBFS


def test_import_44k_stereo_mp3(stereo_mp3, check_formats):
    master = audio.prepare(stereo_mp3)
    assert (master.frame_rate, master.channels, master.sample_width) == (16000, 1, 2)
    # 2 s of tone; the 1 s of silence either side trimmed to the 100 ms kept
    assert 2.1 <= audio.duration_s(master) <= 2.35
    assert master.dBFS == pytest.approx(audio.TARGET_RMS_DBFS, abs=0.3)
    assert master.max_dBFS <= audio.PEAK_CEILING_DBFS + 0.01
    seconds = check_formats(audio.encode_all(master))
    assert seconds == pytest.approx(audio.duration_s(master), abs=0.01)


@pytest.mark.parametrize(("ext", "fmt", "rate"), [("ulaw", "mulaw", 8000), ("alaw", "alaw", 8000),
                                                  ("gsm", "gsm", 8000), ("g722", "g722", 16000)])
def test_coded_formats_decode_back_to_the_same_loudness(stereo_mp3, ext, fmt, rate):
    out = audio.convert(stereo_mp3)
    assert pcm_dbfs(out[ext], fmt, rate) == pytest.approx(audio.TARGET_RMS_DBFS, abs=1.5)


def test_peak_limit_wins_over_rms_target(make_audio):
    # A click train: peaks far above its RMS, so the -3 dBFS ceiling sets the gain.
    f = make_audio("clicks.wav", "aevalsrc='if(lt(mod(t,0.25),0.002),0.5,0.001)':s=16000:d=2")
    master = audio.prepare(f)
    assert master.max_dBFS == pytest.approx(audio.PEAK_CEILING_DBFS, abs=0.1)
    assert master.dBFS < audio.TARGET_RMS_DBFS - 3


def test_full_scale_peaks_of_clean_audio_are_not_clipping(make_audio):
    # A sine at exactly 0 dBFS touches the rail once per half-cycle: not clipped.
    f = make_audio("loud.wav", "aevalsrc=sin(440*2*PI*t):s=44100:d=1", "-c:a", "pcm_s16le")
    assert audio.prepare(f).max_dBFS <= audio.PEAK_CEILING_DBFS + 0.01


def test_loud_clean_phone_recording_is_not_clipping(make_audio):
    # u-law at its top code for a sample per peak, as a loud clean recording would be
    f = make_audio("phone.wav", "aevalsrc=0.99*sin(300*2*PI*t):s=8000:d=2", "-c:a", "pcm_mulaw")
    assert audio.duration_s(audio.prepare(f)) > 1.9


def _empty(tmp_path, make_audio):
    f = tmp_path / "empty.wav"
    f.write_bytes(b"")
    return f


def _text_as_wav(tmp_path, make_audio):
    f = tmp_path / "notes.wav"
    f.write_text("Please record the greeting tomorrow.\n" * 20)
    return f


def _ten_minutes(tmp_path, make_audio):
    return make_audio("long.wav", "sine=f=440:r=8000:d=600")


def _silence(tmp_path, make_audio):
    return make_audio("silence.mp3", "anullsrc=r=44100:cl=stereo:d=3")


def _clipped(tmp_path, make_audio):
    # 440 Hz at 6x full scale: flat at both rails for most of each cycle
    return make_audio("clipped.wav", "aevalsrc=6*sin(440*2*PI*t):s=44100:d=2", "-c:a", "pcm_s16le")


def _clipped_ulaw(tmp_path, make_audio):
    # recorded on a phone: u-law decodes to at most +-32124, never 32767
    return make_audio("phone.wav", "aevalsrc=4*sin(300*2*PI*t):s=8000:d=2", "-c:a", "pcm_mulaw")


def _no_audio_stream(tmp_path, make_audio):
    return make_audio("picture.png", "color=c=red:s=16x16", "-frames:v", "1")


def _missing(tmp_path, make_audio):
    return tmp_path / "nope.mp3"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_empty, "is empty (0 bytes)"),
        (_text_as_wav, "is not audio that ffmpeg can decode"),
        (_ten_minutes, "is too long (600.0 s); the maximum is 60 s"),
        (_silence, "is silent"),
        (_clipped, "is clipped"),
        (_clipped_ulaw, "is clipped"),
        (_no_audio_stream, "contains no audio stream"),
        (_missing, "does not exist"),
    ],
)
def test_bad_input_names_the_file_and_the_problem(tmp_path, make_audio, make, reason):
    f = make(tmp_path, make_audio)
    with pytest.raises(BadAudio) as info:
        audio.prepare(f)
    assert info.value.file == str(f)
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{f}: ")
    assert "\n" not in str(info.value)


def test_max_duration_applies_after_trimming(make_audio):
    f = make_audio("tone.wav", TONE, "-af", "adelay=3000,apad=pad_dur=3")  # 8 s file, 2 s of sound
    assert audio.duration_s(audio.prepare(f, max_duration=3)) < 3
    with pytest.raises(BadAudio, match=r"too long \(2\.\d s after trimming silence\); the maximum is 1.5 s"):
        audio.prepare(f, max_duration=1.5)


def test_master_round_trip_and_garbage_master(tmp_path, stereo_mp3):
    master = audio.prepare(stereo_mp3)
    path = tmp_path / "m.wav"
    audio.write_master(master, path)
    assert audio.read_master(path).raw_data == master.raw_data
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels()) == (16000, 1)
    path.write_bytes(b"RIFF nonsense")
    with pytest.raises(BadAudio, match="not a readable prompt master"):
        audio.read_master(path)


def test_encode_rejects_a_wrong_master_and_unknown_format(stereo_mp3):
    with pytest.raises(AnnouncementError, match="must be 16000 Hz mono"):
        audio.encode_all(AudioSegment.silent(500, frame_rate=8000))
    with pytest.raises(AnnouncementError, match="unknown format 'mp3'"):
        audio.encode_all(audio.prepare(stereo_mp3), ("mp3",))


def test_encode_a_subset(stereo_mp3):
    out = audio.convert(stereo_mp3, ("sln16", "ulaw"))
    assert set(out) == {"sln16", "ulaw"}
    with wave.open(io.BytesIO(audio.convert(stereo_mp3, ("wav",))["wav"])) as w:
        assert w.getnframes() == len(out["ulaw"])


async def test_convert_async_runs_off_the_loop_with_bounded_concurrency(stereo_mp3, monkeypatch):
    running = 0
    peak = 0
    real = audio.convert

    def counting(*args, **kwargs):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            return real(*args, **kwargs)
        finally:
            running -= 1

    monkeypatch.setattr(audio, "convert", counting)
    monkeypatch.setattr(audio, "CONCURRENCY", 2)
    monkeypatch.setattr(audio, "_semaphores", type(audio._semaphores)())
    results = await asyncio.gather(*(audio.convert_async(stereo_mp3, ("ulaw",)) for _ in range(5)))
    assert len({r["ulaw"] for r in results}) == 1
    assert 1 <= peak <= 2
