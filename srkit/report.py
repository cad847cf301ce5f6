"""An HTML report of a benchmark run: one self-contained page (images inline), for a person to look at.

    python carn/sample.py --ckpt_path carn_m --test_data_dir ... --report      # or, after any run:
    from srkit.report import write_report; write_report("sample/carn_m")

The page holds the summary table (dataset x scale: PSNR/SSIM, the MATLAB-bicubic PSNR and the gain over it,
time per image), the per-image rows (sortable, by gain to begin with; ``#sort=<column>-asc|desc`` in the
address picks another order), and side-by-side crops HR / bicubic / SR of the best and worst image of each
dataset and scale (by gain), at the box where the model's error differs most from bicubic's.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import uniform_filter

from srkit import metrics
from srkit.benchmark import find_pairs, load_pair, scale_tag
from srkit.imageio import read_rgb8
from srkit.imresize import imresize
from srkit.sampler import save_text

CROP = 96  # HR pixels per side of a crop


def _png_uri(img: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def crop_box(hr: np.ndarray, sr: np.ndarray, bic: np.ndarray, size: int = CROP) -> tuple[int, int, int]:
    """(y, x, side) of the square where |SR - HR| and |bicubic - HR| differ most (summed over the box)."""
    side = min(size, hr.shape[0], hr.shape[1])
    d = np.abs(bic.astype(float) - hr).mean(2) - np.abs(sr.astype(float) - hr).mean(2)
    score = np.abs(uniform_filter(d, size=side, mode="constant"))
    half = side // 2
    valid = score[half:hr.shape[0] - (side - half) + 1, half:hr.shape[1] - (side - half) + 1]
    y, x = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(y), int(x), side


def _dataset_root(config: dict, name: str) -> Path | None:
    return next((Path(d) for d in config.get("test_data_dir", []) if Path(d).name == name), None)


def _section(run_dir: Path, config: dict, result: dict) -> tuple[list[dict], list[dict]]:
    """(per-image rows with bicubic PSNR and gain, the crops of the best and worst image)."""
    scale, tag = result["scale"], scale_tag(result["scale"])
    out = run_dir / result["dataset"] / tag
    root = _dataset_root(config, result["dataset"])
    if root is None or not (out / "metrics.csv").is_file():
        return [], []
    pairs = {p.name: p for p in find_pairs(root, scale)[0]}
    border = math.ceil(scale)
    rows, images = [], {}
    for row in csv.DictReader(open(out / "metrics.csv")):
        hr, lr = load_pair(pairs[row["image"]], scale)
        bic = imresize(lr, scale, output_shape=hr.shape[:2])
        bic_psnr = metrics.psnr(bic, hr, border)
        rows.append({"dataset": result["dataset"], "scale": tag, "image": row["image"], "psnr": float(row["psnr"]),
                     "ssim": float(row["ssim"]), "bicubic": bic_psnr, "gain": float(row["psnr"]) - bic_psnr,
                     "seconds": float(row["seconds"])})
        images[row["image"]] = (hr, bic)
    crops = []
    if rows:
        ranked = sorted(rows, key=lambda r: r["gain"])
        for label, row in (("best", ranked[-1]), ("worst", ranked[0])):
            sr_path = out / "SR" / row["image"].replace("_HR", "_SR")
            if not sr_path.is_file():
                continue  # --no_save: scores only
            hr, bic = images[row["image"]]
            sr = read_rgb8(sr_path)
            y, x, side = crop_box(hr, sr, bic)
            crops.append({**row, "label": label, "box": [y, x, side],
                          "uris": [_png_uri(np.ascontiguousarray(a[y:y + side, x:x + side])) for a in (hr, bic, sr)]})
    return rows, crops


def render(run_dir: Path) -> str:
    summary = json.loads((run_dir / "summary.json").read_text())
    config, rows, crops, table = summary.get("config", {}), [], [], []
    for result in summary["results"]:
        r, c = _section(run_dir, config, result)
        rows += r
        crops += c
        bic = float(np.mean([x["bicubic"] for x in r])) if r else math.nan
        table.append({**result, "bicubic": bic, "gain": result["psnr"] - bic})
    e = html.escape
    head = ("<tr><th>dataset</th><th>scale</th><th>images</th><th>PSNR (dB)</th><th>SSIM</th>"
            "<th>bicubic PSNR</th><th>gain</th><th>s / image</th></tr>")
    summary_rows = "".join(
        f"<tr><td>{e(t['dataset'])}</td><td>{scale_tag(t['scale'])}</td><td>{t['images']}</td>"
        f"<td>{t['psnr']:.3f}</td><td>{t['ssim']:.4f}</td><td>{t['bicubic']:.3f}</td><td>{t['gain']:+.3f}</td>"
        f"<td>{t['sec_per_image']:.3f}</td></tr>" for t in table)
    cols = ["dataset", "scale", "image", "psnr", "ssim", "bicubic", "gain", "seconds"]
    image_rows = "".join(
        "<tr class='img'>" + "".join(
            f"<td data-v='{r[c] if isinstance(r[c], float) else e(str(r[c]))}'>"
            f"{f'{r[c]:.3f}' if c in ('psnr', 'bicubic', 'seconds') else f'{r[c]:+.3f}' if c == 'gain' else f'{r[c]:.4f}' if c == 'ssim' else e(str(r[c]))}"
            f"</td>" for c in cols) + "</tr>" for r in rows)
    figures = "".join(
        f"<figure class='crop' data-label='{c['label']}'><figcaption>{e(c['dataset'])} {c['scale']}, {c['label']} "
        f"gain: {e(c['image'])} (SR {c['psnr']:.2f} dB, bicubic {c['bicubic']:.2f} dB, box y {c['box'][0]} "
        f"x {c['box'][1]}, {c['box'][2]} px)</figcaption>"
        + "".join(f"<div><img alt='{n}' src='{u}'><span>{n}</span></div>" for n, u in zip(("HR", "bicubic", "SR"), c["uris"]))
        + "</figure>" for c in crops)
    model = e(summary.get("model", run_dir.name))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{model}: benchmark report</title>
<style>
body {{ font: 14px/1.4 sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #f0f0f0; }} th.sortable {{ cursor: pointer; }} td:nth-child(-n+3) {{ text-align: left; }}
figure.crop {{ display: inline-block; width: 600px; vertical-align: top; margin: 0 1.5em 1.5em 0; }}
figure.crop div {{ display: inline-block; text-align: center; margin-right: 6px; }}
figure.crop img {{ width: 192px; height: 192px; image-rendering: pixelated; display: block; }}
</style></head><body>
<h1>{model}</h1>
<p>Y-channel PSNR / SSIM (MATLAB protocol, border = scale). Bicubic: MATLAB-compatible imresize of the LR.</p>
<h2>Summary</h2>
<table id="summary">{head}{summary_rows}</table>
<h2>Best and worst images (by gain over bicubic)</h2>
{figures or "<p>No SR images were saved (--no_save): no crops.</p>"}
<h2>Images</h2>
<table id="images"><tr>{"".join(f"<th class='sortable' data-col='{i}'>{c}</th>" for i, c in enumerate(cols))}</tr>
{image_rows}</table>
<script>
function sortRows(col, desc) {{
  const table = document.getElementById("images");
  const rows = Array.from(table.querySelectorAll("tr.img"));
  const key = r => {{ const v = r.children[col].dataset.v; const n = parseFloat(v); return isNaN(n) ? v : n; }};
  rows.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0) * (desc ? -1 : 1));
  rows.forEach(r => table.appendChild(r));
  table.dataset.sorted = table.rows[0].children[col].textContent + (desc ? "-desc" : "-asc");
}}
document.querySelectorAll("th.sortable").forEach(th => th.addEventListener("click", () => {{
  const table = document.getElementById("images");
  const col = parseInt(th.dataset.col);
  sortRows(col, table.dataset.sorted !== th.textContent + "-desc");
}}));
const cols = {json.dumps(cols)};
const m = /sort=(\\w+)-(asc|desc)/.exec(location.hash);
sortRows(cols.indexOf(m ? m[1] : "gain"), m ? m[2] === "desc" : true);
</script></body></html>
"""


def write_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report.html`` for a sample run's folder (``<sample_dir>/<model>``); returns its path."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").is_file():
        raise FileNotFoundError(f"{run_dir}: no summary.json (run sample.py on benchmarks first)")
    path = run_dir / "report.html"
    save_text(path, render(run_dir))
    return path
