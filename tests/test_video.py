"""Video in and out through srkit-upscale, as users run it: short videos made with PyAV (audio, odd sizes,
10-bit, VFR, rotation), checked for frame count, timing, audio packets (bit-identical) and pixels against the
image path; bad files get one line each; Ctrl-C leaves a playable partial file; memory is flat in length."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from conftest import ROOT  # noqa: E402
from srkit.cli import upscale as cli  # noqa: E402
from srkit.inference.predictor import Predictor  # noqa: E402
from srkit.inference.upscale import upscale_pil  # noqa: E402
from srkit.weights.load import load_model  # noqa: E402
from video_fixtures import frame_times, make_video, packets  # noqa: E402


def _run(inputs, out: Path, model: Path, *extra: str) -> int:
    return cli.main(["-i", *map(str, inputs), "-o", str(out), "-n", str(model), "-s", "2", "--cpu", *extra])


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def test_a_clip_with_audio_keeps_every_frame_its_timing_the_audio_and_the_rotation(tmp_path, random_carn_m, capsys):
    src = make_video(tmp_path / "clip.mp4", frames=8, audio=True, rotate=90)
    assert _run([src], tmp_path / "out", random_carn_m) == 0
    out = tmp_path / "out" / "clip.mp4"
    assert frame_times(out) == pytest.approx(frame_times(src), abs=1e-6) and len(frame_times(out)) == 8
    assert packets(out, "audio") == packets(src, "audio") and packets(src, "audio")  # bytes and times
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert (s.width, s.height, s.codec_context.name, s.average_rate) == (128, 72, "h264", 12)
        assert next(c.decode(s)).rotation == 90
    assert "upscaled 1 of 1 video(s) (8 frames) x2" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["clip.mp4"]  # no temporary files left


def test_subtitles_are_kept_where_the_container_holds_them(tmp_path, random_carn_m, capsys):
    src = make_video(tmp_path / "sub.mkv", frames=4, audio=True, subtitles=True)
    assert _run([src], tmp_path / "out", random_carn_m) == 0
    out = tmp_path / "out" / "sub.mkv"
    assert packets(out, "subtitles") == packets(src, "subtitles") == [(b"first line", 0), (b"second line", 200000)]
    assert packets(out, "audio") == packets(src, "audio") and "dropped" not in capsys.readouterr().err


def test_pixels_equal_the_image_path_on_an_odd_size_through_a_lossless_codec(tmp_path, random_carn_m):
    src = make_video(tmp_path / "odd.mkv", frames=3, size=(33, 19), pix_fmt="yuv444p")
    assert _run([src], tmp_path / "out", random_carn_m, "--video_codec", "libx264rgb", "--crf", "0") == 0
    got = _frames(tmp_path / "out" / "odd.mkv")
    net, _ = load_model(str(random_carn_m))
    predict = Predictor(net, precision="auto")  # the CLI's default for upscaling
    with av.open(str(src)) as c:
        want = [np.asarray(upscale_pil(predict, f.to_image(), 2, torch.device("cpu"))) for f in c.decode(video=0)]
    assert len(got) == 3 and all(g.shape == (38, 66, 3) and np.array_equal(g, w) for g, w in zip(got, want))


def test_ten_bit_variable_frame_rate_keeps_every_timestamp(tmp_path, random_carn_m):
    pts = [0, 10, 30, 35, 60, 100]  # 1/120 s units: gaps of 1, 2, 0.5, 2.5 and 4 frames
    src = make_video(tmp_path / "vfr10.mkv", frames=6, size=(30, 18), codec="ffv1", pix_fmt="yuv420p10le", pts=pts)
    assert _run([src], tmp_path / "out", random_carn_m) == 0
    out = tmp_path / "out" / "vfr10.mkv"
    assert frame_times(out) == pytest.approx([p / 120 for p in pts], abs=1e-3)


def test_fps_resamples_by_time_and_keeps_the_duration(tmp_path, random_carn_m):
    src = make_video(tmp_path / "c.mp4", frames=6, fps=12)
    assert _run([src], tmp_path / "out", random_carn_m, "--fps", "24") == 0
    times = frame_times(tmp_path / "out" / "c.mp4")
    assert times == pytest.approx([i / 24 for i in range(12)], abs=1e-3)


def test_bad_videos_get_one_line_each_and_the_rest_of_the_folder_goes_on(tmp_path, random_carn_m, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    make_video(folder / "good.mp4", frames=2)
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    good = (folder / "good.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(good[:len(good) // 2])
    with av.open(str(folder / "audio_only.mkv"), "w") as c:  # a container without video
        a = c.add_stream("aac", rate=48000)
        a.layout = "stereo"
        f = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
        f.sample_rate, f.pts = 48000, 0
        c.mux(a.encode(f))
        c.mux(a.encode(None))
    assert _run([folder], tmp_path / "out", random_carn_m) == 1
    text = capsys.readouterr().err
    err = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(err) == 3 and "Traceback" not in text, text
    assert any("corrupt.mp4" in e for e in err) and any("truncated.mp4" in e for e in err)
    assert any("audio_only.mkv: holds no video stream" in e for e in err)
    assert len(frame_times(tmp_path / "out" / "good.mp4")) == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.mp4"]


def test_an_unknown_encoder_is_one_line_before_anything_runs(tmp_path, random_carn_m, capsys):
    src = make_video(tmp_path / "c.mp4", frames=2)
    assert _run([src], tmp_path / "out", random_carn_m, "--video_codec", "nosuchcodec") == 2
    assert capsys.readouterr().err.strip() == "error: --video_codec nosuchcodec: this PyAV has no such encoder"
    assert not (tmp_path / "out").exists()


def test_ctrl_c_leaves_a_playable_partial_file_and_says_so(tmp_path, random_carn_m, monkeypatch, capsys):
    src = make_video(tmp_path / "c.mp4", frames=10, audio=True)
    real, calls = Predictor.uint8, []

    def interrupted(self, x, scale):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(self, x, scale)
    monkeypatch.setattr(Predictor, "uint8", interrupted)
    assert _run([src], tmp_path / "out", random_carn_m) == 130
    kept = tmp_path / "out" / "c.partial.mp4"
    assert "c.partial.mp4 holds the first 4 frame(s), playable" in capsys.readouterr().err
    assert len(frame_times(kept)) == 4 and sorted(p.name for p in (tmp_path / "out").iterdir()) == [kept.name]


RSS_SCRIPT = """
import resource, sys
from srkit.cli.upscale import main
assert main(sys.argv[1:] + ["--cpu", "-s", "2"]) == 0
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_resident_memory_is_flat_in_the_length(tmp_path, random_carn_m):
    """Peak RSS of a 10-second clip within 20% of a 1-second one's (64x36 at 12 fps, with audio)."""
    peaks = {}
    for seconds in (1, 10):
        src = make_video(tmp_path / f"s{seconds}.mp4", frames=12 * seconds, audio=True)
        r = subprocess.run([sys.executable, "-c", RSS_SCRIPT, "-i", str(src), "-o", str(tmp_path / f"o{seconds}"),
                            "-n", str(random_carn_m)], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-2000:]
        peaks[seconds] = int(r.stdout.split()[-1])
        assert len(frame_times(tmp_path / f"o{seconds}" / src.name)) == 12 * seconds
    print(f"peak RSS (KiB): {peaks}")
    assert peaks[10] <= 1.2 * peaks[1], peaks
