"""Plot a training run's log.csv (loss and validation PSNR per scale) to a PNG.

    python -m srkit.plot_log checkpoint/carn_m/log.csv --out assets/carn_m_training.png
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(csv_path: Path, out: Path, smooth: int = 50) -> Path:
    rows = list(csv.DictReader(open(csv_path)))
    if not rows:
        raise ValueError(f"{csv_path}: no rows")
    steps = [int(r["step"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    k = max(1, min(smooth, len(loss) // 10 or 1))
    avg = [sum(loss[max(0, i - k + 1):i + 1]) / len(loss[max(0, i - k + 1):i + 1]) for i in range(len(loss))]
    psnr_cols = [c for c in rows[0] if c.startswith("psnr_x")]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(steps, loss, lw=0.5, alpha=0.4, label="loss")
    a.plot(steps, avg, lw=1.5, label=f"mean of {k}")
    a.set_xlabel("step")
    a.set_ylabel("training loss")
    a.set_yscale("log")
    a.legend()
    for c in psnr_cols:
        pts = [(int(r["step"]), float(r[c])) for r in rows if r.get(c)]
        if pts:
            b.plot(*zip(*pts), marker="o", label=c.replace("psnr_", ""))
    b.set_xlabel("step")
    b.set_ylabel("validation PSNR (Y, dB)")
    if psnr_cols:
        b.legend()
    fig.suptitle(csv_path.parent.name)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", type=Path)
    p.add_argument("--out", type=Path, default=None, help="default: training.png beside the CSV")
    a = p.parse_args(argv)
    if not a.csv.is_file():
        print(f"error: {a.csv}: no such file", file=sys.stderr)
        return 1
    print(plot(a.csv, a.out or a.csv.with_name("training.png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
