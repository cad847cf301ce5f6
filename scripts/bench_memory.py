"""Peak memory and speed of upscaling large images, by image size: is memory flat in image size?

    python scripts/bench_memory.py [--ckpt_path carn_m] [--sizes 512 1024 2048x1536] [--scale 4]

Each case is one fresh process running ``carn/sample.py --input`` (the command a user runs) on a random LR
image of the given size; it reports its own peak resident memory (ru_maxrss), the wall time and the output
megapixels per second. Settings: ``default`` (the fast path, tiles chosen from the memory available) and
``plain`` (``--plain``: the authors' eager forward, same tiles). The speed-up of the default over ``--plain`` is
printed per size. Memory counts everything the process holds: weights, tiles, the uint8 output, the encoder.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from carn import sample
t0 = time.perf_counter()
rc = sample.main({argv!r})
print(json.dumps({{"rc": rc, "seconds": time.perf_counter() - t0,
                   "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}))
"""


def run_case(ckpt: str, image: Path, scale: int, plain: bool, out: Path) -> dict:
    argv = ["--ckpt_path", ckpt, "--input", str(image), "--scale", str(scale), "--sample_dir", str(out), "--cpu"]
    if plain:
        argv.append("--plain")
    code = CHILD.format(argv=argv)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt_path", default="carn_m")
    p.add_argument("--sizes", nargs="+", default=["512", "1024", "2048"],
                   help="LR sizes: N (N x N) or WxH, e.g. 2048x1536")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--settings", nargs="+", default=["default", "plain"], choices=["default", "plain"])
    p.add_argument("--json", type=Path, default=None, help="also write the rows and the machine here")
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    print(f"{'LR size':>10} {'setting':>24} {'peak RSS':>10} {'seconds':>9} {'Mpx/s':>7}")
    with tempfile.TemporaryDirectory() as d:
        for size in a.sizes:
            w, h = (int(v) for v in size.split("x")) if "x" in size else (int(size), int(size))
            image = Path(d) / f"lr_{w}x{h}.png"
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(image)
            mpx = w * h * a.scale ** 2 / 1e6
            seconds = {}
            for setting in a.settings:
                res = run_case(a.ckpt_path, image, a.scale, plain=setting == "plain", out=Path(d) / "out")
                seconds[setting] = res["seconds"]
                rows.append({"size": f"{w}x{h}", "scale": a.scale, "setting": setting, "peak_gb": res["peak_gb"],
                             "seconds": res["seconds"]})
                print(f"{w}x{h:>5} {setting:>24} {res['peak_gb']:>8.2f} GB {res['seconds']:>9.1f} "
                      f"{mpx / res['seconds']:>7.2f}", flush=True)
            if len(seconds) == 2:
                print(f"{w}x{h:>5} {'default over --plain':>24} {seconds['plain'] / seconds['default']:>19.2f}x")
                rows[-2]["speedup"] = f"{seconds['plain'] / seconds['default']:.2f}x"
    if a.json:
        import bench_inference
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"rows": rows, "machine": bench_inference.machine()}, indent=2))


if __name__ == "__main__":
    main()
