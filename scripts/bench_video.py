"""The video acceptance benchmark: a clip with audio through ``srkit-upscale`` (the command users run), x2,
at two lengths: every frame out, the same duration within one frame, the audio bit-identical, and peak RSS of
the long clip within 20% of the short one's.

    python scripts/bench_video.py [--ckpt_path carn_m] [--size 1280x720] [--fps 5] [--seconds 1 10]

Each run is one fresh process reporting its own peak resident memory (ru_maxrss) and wall time. 720p x2 runs
at about a frame per few seconds on two CPU cores, so the default frame rate is 5 fps (10 s = 50 frames); give
``--fps 30`` for the full 300 frames where there is time (memory does not depend on the rate). It also
measures whether batching frames would be faster: ``--batch 4`` frames in one forward against four single ones.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RSS_RATIO = 1.2

CHILD = r"""
import json, resource, sys, time
from srkit.cli.upscale import main
t0 = time.perf_counter()
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _clips():
    spec = importlib.util.spec_from_file_location("video_fixtures", ROOT / "tests" / "video_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _batch_ratio(ckpt: str, w: int, h: int, n: int) -> float:
    """(time of n single-frame forwards) / (time of one n-frame forward) through the default predictor."""
    import torch

    from srkit.inference.predictor import Predictor
    from srkit.weights.load import load_model

    net, _ = load_model(ckpt)
    p = Predictor(net)
    x = torch.rand(n, 3, h, w)
    p(x[:1], 2)  # warm-up
    t0 = time.perf_counter()
    for i in range(n):
        p(x[i:i + 1], 2)
    single = time.perf_counter() - t0
    t0 = time.perf_counter()
    p(x, 2)
    return single / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt_path", default="carn_m")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=int, default=5)
    ap.add_argument("--seconds", type=int, nargs=2, default=[1, 10])
    ap.add_argument("--batch", type=int, default=4, help="frames per forward for the batching measurement (0: skip)")
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))
    clips = _clips()
    rows, ok = {}, True
    with tempfile.TemporaryDirectory() as tmp:
        for sec in args.seconds:
            src = clips.make_video(Path(tmp) / f"clip_{sec}s.mp4", frames=sec * args.fps, size=(w, h), fps=args.fps,
                                   audio=True, options={"crf": "18"})
            out = Path(tmp) / f"out_{sec}"
            r = subprocess.run([sys.executable, "-c", CHILD, "-i", str(src), "-o", str(out), "-n", args.ckpt_path,
                                "-s", "2"], capture_output=True, text=True, cwd=ROOT)
            if r.returncode != 0:
                print(r.stderr[-2000:], file=sys.stderr)
                return 1
            res = json.loads(r.stdout.strip().splitlines()[-1])
            got, want = clips.frame_times(out / src.name), clips.frame_times(src)
            dur = lambda t: t[-1] - t[0] + 1 / args.fps  # noqa: E731
            res.update(frames=len(got), frames_in=len(want), duration_delta_frames=abs(dur(got) - dur(want)) * args.fps,
                       audio_identical=clips.packets(out / src.name, "audio") == clips.packets(src, "audio"),
                       s_per_frame=res["seconds"] / len(want))
            ok &= res["frames"] == res["frames_in"] and res["duration_delta_frames"] <= 1 and res["audio_identical"]
            rows[sec] = res
            print(f"{sec:>3} s {w}x{h} @ {args.fps} fps x2: {res['frames']}/{res['frames_in']} frames, duration "
                  f"delta {res['duration_delta_frames']:.2f} frame, audio identical {res['audio_identical']}, "
                  f"peak RSS {res['rss_mb']:.0f} MB, {res['seconds']:.1f} s ({res['s_per_frame']:.2f} s/frame)")
    short, long_ = (rows[s]["rss_mb"] for s in args.seconds)
    print(f"peak RSS {args.seconds[1]} s / {args.seconds[0]} s: {long_ / short:.3f} (limit {RSS_RATIO})")
    ok &= long_ <= RSS_RATIO * short
    if args.batch:
        ratio = _batch_ratio(args.ckpt_path, w, h, args.batch)
        print(f"batching {args.batch} frames in one forward vs {args.batch} single ones: {ratio:.2f}x "
              f"({'faster' if ratio > 1.05 else 'not faster'})")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
