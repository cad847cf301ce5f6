"""Plot a training run's log.csv (loss and validation PSNR per scale) to a PNG (``srkit-plot-log``).

Drawn on a matplotlib Figure with its own Agg canvas: no pyplot, no backend switched for the process.
"""
from __future__ import annotations

import csv
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from srkit.core.atomic import atomic_write


def plot(csv_path: Path, out: Path, smooth: int = 50) -> Path:
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{csv_path}: no rows")
    steps = [int(r["step"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    k = max(1, min(smooth, len(loss) // 10 or 1))
    avg = [sum(loss[max(0, i - k + 1):i + 1]) / len(loss[max(0, i - k + 1):i + 1]) for i in range(len(loss))]
    psnr_cols = [c for c in rows[0] if c.startswith("psnr_x")]
    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    a, b = fig.subplots(1, 2)
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
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    return out
