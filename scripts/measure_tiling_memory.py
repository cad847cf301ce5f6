"""Peak memory of CARN-M x4 on a large LR input, whole-image forward vs tiled (CPU), each in its own process.

    python scripts/measure_tiling_memory.py --size 2000 --cap_gb 16

The child's address space is capped (--cap_gb) so a whole-image forward that does not fit fails cleanly
instead of exhausting the machine; such a run is reported as needing more than the cap.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, time, torch
from carn import CARN_M
from srkit.inference.tiling import forward_tiled
size, tile = {size}, {tile}
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
net = CARN_M().eval()
x = torch.rand(1, 3, size, size)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    with torch.inference_mode():
        y = forward_tiled(net, x, 4, tile=tile, overlap=20)
    ok, shape = True, list(y.shape)
except (RuntimeError, MemoryError) as e:
    ok, shape = False, str(e)[:120]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"ok": ok, "shape": shape, "peak_gb": peak / 2**20, "before_gb": base / 2**20,
                  "seconds": time.perf_counter() - t0}}))
"""


def run(size: int, tile: int, cap_gb: float) -> dict:
    code = CHILD.format(root=str(ROOT), size=size, tile=tile, cap=int(cap_gb * 2**30))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = [x for x in r.stdout.splitlines() if x.startswith("{")]
    return json.loads(line[-1]) if line else {"ok": False, "shape": (r.stderr or "killed")[-200:], "peak_gb": float("nan")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=2000)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--cap_gb", type=float, default=16)
    a = p.parse_args()
    for label, tile in ((f"tiled ({a.tile} px tiles, overlap 20)", a.tile), ("whole image", 0)):
        r = run(a.size, tile, a.cap_gb)
        if r["ok"]:
            print(f"{label:<36} peak RSS {r['peak_gb']:.2f} GB, {r['seconds']:.0f} s, output {r['shape']}")
        else:
            print(f"{label:<36} failed under a {a.cap_gb:g} GB cap (needs more): {r['shape']}")


if __name__ == "__main__":
    main()
