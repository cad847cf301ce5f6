"""The HTML report of an evaluation: one page, for a person to look at, that says what produced it.

    srkit-report sample/NAME-1a2b3c4d          # or python -m srkit.report ..., or sample.py ... --report

The page (``report.html`` beside ``summary.json``) holds:

- a header: the checkpoint (name, file, sha256, family, architecture) and each run that wrote into the folder
  (command line, date, device, torch, project version and commit);
- the summary table (dataset x scale: PSNR/SSIM, the MATLAB-bicubic PSNR and the gain over it, time per image);
- HR / bicubic / SR crops of the best and the worst image of each dataset and scale (by gain over bicubic),
  at the box where the model's error differs most from bicubic's (one figure where best and worst are one
  image);
- the per-image rows, sortable (click a header, or ``report.html#sort=<column>-asc|desc``; an unknown column
  is ignored), with links to the full-size SR and HR images;
- a filter by dataset and scale for the rows and the crops (also from the address:
  ``report.html#filter=Set5|x4``; an unknown value is ignored).

Crops are inline; full-size images are linked relative to the page, so the folder can be moved or shared
whole. Images are read one at a time (two passes: scores, then the two crops), so building the page takes
the memory of one image whatever the benchmark's size. Benchmark folders are found at the absolute paths
``summary.json`` stores, not relative to the working directory.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image
from scipy.ndimage import uniform_filter

from srkit.core.atomic import write_text
from srkit.data import metrics
from srkit.data.benchmark import DatasetError, find_pairs, load_pair, scale_tag, sr_name
from srkit.data.imageio import ImageError, read_rgb8
from srkit.data.imresize import imresize
from srkit.inference.evaluate import read_metrics

CROP = 96  # HR pixels per side of a crop
COLUMNS = ["dataset", "scale", "image", "psnr", "ssim", "bicubic", "gain", "seconds"]

STYLE = """
body { font: 14px/1.4 sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
#provenance td, #provenance th, #runs td { text-align: left; }
th { background: #f0f0f0; } th.sortable { cursor: pointer; } #images td:nth-child(-n+3) { text-align: left; }
figure.crop { display: inline-block; width: 600px; vertical-align: top; margin: 0 1.5em 1.5em 0; }
figure.crop div { display: inline-block; text-align: center; margin-right: 6px; }
figure.crop img { width: 192px; height: 192px; image-rendering: pixelated; display: block; }
.hidden { display: none; }
"""
SCRIPT = """
const cols = """ + json.dumps(COLUMNS) + """;
function sortRows(col, desc) {
  const table = document.getElementById("images");
  const rows = Array.from(table.querySelectorAll("tr.img"));
  const key = r => { const v = r.children[col].dataset.v; const n = parseFloat(v); return isNaN(n) ? v : n; };
  rows.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0) * (desc ? -1 : 1));
  rows.forEach(r => table.appendChild(r));
  table.dataset.sorted = cols[col] + (desc ? "-desc" : "-asc");
}
document.querySelectorAll("th.sortable").forEach(th => th.addEventListener("click", () => {
  const col = parseInt(th.dataset.col);
  sortRows(col, document.getElementById("images").dataset.sorted !== cols[col] + "-desc");
}));
function applyFilter() {
  const want = document.getElementById("filter").value;
  document.querySelectorAll("tr.img, figure.crop").forEach(el =>
    el.classList.toggle("hidden", want !== "" && el.dataset.key !== want));
}
document.getElementById("filter").addEventListener("change", applyFilter);
const f = /filter=([^&]*)/.exec(location.hash);
if (f) {
  const sel = document.getElementById("filter");
  const want = decodeURIComponent(f[1]);
  if (Array.from(sel.options).some(o => o.value === want)) { sel.value = want; applyFilter(); }
}
const m = /sort=(\\w+)-(asc|desc)/.exec(location.hash);
const asked = m ? cols.indexOf(m[1]) : -1;
sortRows(asked >= 0 ? asked : cols.indexOf("gain"), asked >= 0 ? m[2] === "desc" : true);
"""


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


# Nothing on the page runs or loads but its own style and script (by hash): a name in a results folder that
# slipped through escaping still could not run; crops are data: URIs, full-size images links.
CSP = (f"default-src 'none'; img-src data:; style-src {_digest(STYLE)}; script-src {_digest(SCRIPT)}; "
       f"base-uri 'none'; form-action 'none'")


class ReportError(ValueError):
    """A folder that holds no evaluation to report on; the message says which and why."""


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


@dataclass
class Section:
    """One dataset at one scale: its per-image rows and its crops."""
    rows: list[dict]
    crops: list[dict]
    bicubic: float


def _shown(name: str) -> str:
    """A file name as text (a name that is not valid UTF-8 shows its bytes replaced)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _href(path: str) -> str:
    """A link to a file of the run folder, its name's own bytes percent-encoded."""
    return quote(path.encode("utf-8", "surrogateescape"))


def _section(run_dir: Path, result: dict) -> Section:
    scale, tag = result["scale"], scale_tag(result["scale"])
    out = run_dir / result["dataset"] / tag
    root = Path(result.get("root") or "")
    if not result.get("root") or not (out / "metrics.csv").is_file():
        return Section([], [], math.nan)
    try:
        pairs = {p.name: p for p in find_pairs(root, scale)[0]}
    except DatasetError:
        pairs = {}
    border = math.ceil(scale)
    rows = []
    for row in read_metrics(out / "metrics.csv"):  # pass 1: scores, one image in memory at a time
        entry = {"dataset": result["dataset"], "scale": tag, "image": row["image"], "psnr": float(row["psnr"]),
                 "ssim": float(row["ssim"]), "bicubic": math.nan, "gain": math.nan,
                 "seconds": float(row["seconds"]), "sr": f"{result['dataset']}/{tag}/SR/{sr_name(row['image'])}",
                 "hr": f"{result['dataset']}/{tag}/HR/{row['image']}"}
        pair = pairs.get(row["image"])
        if pair is not None:
            try:
                hr, lr = load_pair(pair, scale)
                entry["bicubic"] = metrics.psnr(imresize(lr, scale, output_shape=hr.shape[:2]), hr, border)
                entry["gain"] = entry["psnr"] - entry["bicubic"]
            except (ImageError, ValueError):
                pass
        rows.append(entry)
    scored = [r for r in rows if not math.isnan(r["gain"])]
    crops = []
    if scored:
        ranked = sorted(scored, key=lambda r: r["gain"])
        picks = [("best", ranked[-1])] + ([("worst", ranked[0])] if ranked[0] is not ranked[-1] else [])
        for label, row in picks:  # pass 2: the two images the crops show
            sr_path = out / "SR" / sr_name(row["image"])
            if not sr_path.is_file():
                continue  # --no_save: scores only
            hr, lr = load_pair(pairs[row["image"]], scale)
            bic = imresize(lr, scale, output_shape=hr.shape[:2])
            sr = read_rgb8(sr_path)
            y, x, side = crop_box(hr, sr, bic)
            crops.append({**row, "label": label, "box": [y, x, side],
                          "uris": [_png_uri(np.ascontiguousarray(a[y:y + side, x:x + side])) for a in (hr, bic, sr)]})
    bic = float(np.mean([r["bicubic"] for r in scored])) if scored else math.nan
    return Section(rows, crops, bic)


def _fmt(v: object, digits: int, signed: bool = False) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v is None or math.isnan(v):
        return "-"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _header(summary: dict) -> str:
    e = html.escape
    ck = summary.get("checkpoint") or {}
    runs = summary.get("runs") or []
    first = runs[-1].get("checkpoint", {}) if runs and not ck else ck
    lines = [("checkpoint", first.get("name")), ("file", first.get("path")), ("sha256", first.get("sha256")),
             ("family", first.get("family")), ("architecture", json.dumps(first.get("arch"), sort_keys=True)
                                                if first.get("arch") else None),
             ("released weights", first.get("released"))]
    head = "".join(f"<tr><th>{e(k)}</th><td><code>{e(str(v))}</code></td></tr>" for k, v in lines if v)
    run_rows = "".join(
        f"<tr><td>{i}</td><td><code>{e(str(r.get('command', '')))}</code></td><td>{e(str(r.get('date', '')))}</td>"
        f"<td>{e(str(r.get('device', '')))}</td><td>{e(str(r.get('precision', 'fp32')))}</td>"
        f"<td>{e(str(r.get('torch', '')))}</td>"
        f"<td>{e(str(r.get('version', '')))}</td><td><code>{e(str(r.get('commit') or '-'))}</code></td></tr>"
        for i, r in enumerate(runs))
    return (f"<table id='provenance'>{head}</table>"
            f"<table id='runs'><tr><th>run</th><th>command</th><th>date (UTC)</th><th>device</th>"
            f"<th>precision</th><th>torch</th><th>version</th><th>commit</th></tr>{run_rows}</table>")


def render(run_dir: Path) -> str:
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    e = html.escape
    rows: list[dict] = []
    crops: list[dict] = []
    table = []
    for result in summary.get("results", []):
        sec = _section(run_dir, result)
        rows += sec.rows
        crops += sec.crops
        gain = result["psnr"] - sec.bicubic if result.get("psnr") is not None else math.nan
        table.append({**result, "bicubic": sec.bicubic, "gain": gain})
    keys = sorted({(r["dataset"], scale_tag(r["scale"])) for r in table})
    options = "".join(f"<option value='{e(d)}|{e(s)}'>{e(d)} {e(s)}</option>" for d, s in keys)
    summary_rows = "".join(
        f"<tr><td>{e(str(t['dataset']))}</td><td>{e(scale_tag(t['scale']))}</td><td>{e(str(t['images']))}</td>"
        f"<td>{_fmt(t.get('psnr'), 3)}</td><td>{_fmt(t.get('ssim'), 4)}</td><td>{_fmt(t['bicubic'], 3)}</td>"
        f"<td>{_fmt(t['gain'], 3, True)}</td><td>{_fmt(t.get('sec_per_image'), 3)}</td></tr>" for t in table)

    def cell(r: dict, c: str) -> str:
        v = r[c]
        shown = {"psnr": _fmt(v, 3), "bicubic": _fmt(v, 3), "seconds": _fmt(v, 3), "gain": _fmt(v, 3, True),
                 "ssim": _fmt(v, 4)}.get(c, e(_shown(str(v))))
        if c == "image":
            shown = f"{shown} <a href='{e(_href(r['sr']))}'>SR</a> <a href='{e(_href(r['hr']))}'>HR</a>"
        sort_key = v if isinstance(v, float) and not math.isnan(v) else e(_shown(str(v)))
        return f"<td data-v='{sort_key}'>{shown}</td>"
    image_rows = "".join(f"<tr class='img' data-key='{e(r['dataset'])}|{e(r['scale'])}'>"
                         + "".join(cell(r, c) for c in COLUMNS) + "</tr>" for r in rows)
    figures = "".join(
        f"<figure class='crop' data-key='{e(c['dataset'])}|{e(c['scale'])}' data-label='{c['label']}'>"
        f"<figcaption>{e(c['dataset'])} {c['scale']}, {c['label']} gain: {e(_shown(c['image']))} (SR {c['psnr']:.2f} dB, "
        f"bicubic {c['bicubic']:.2f} dB, box y {c['box'][0]} x {c['box'][1]}, {c['box'][2]} px)</figcaption>"
        + "".join(f"<div><img alt='{n}' src='{u}'><span>{n}</span></div>"
                  for n, u in zip(("HR", "bicubic", "SR"), c["uris"]))
        + "</figure>" for c in crops)
    model = e(str((summary.get("checkpoint") or {}).get("name") or summary.get("model") or run_dir.name))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}"><title>{model}: benchmark report</title>
<style>{STYLE}</style></head><body>
<h1>{model}</h1>
{_header(summary)}
<p>Y-channel PSNR / SSIM (MATLAB protocol, border = scale). Bicubic: MATLAB-compatible imresize of the LR.</p>
<h2>Summary</h2>
<table id="summary"><tr><th>dataset</th><th>scale</th><th>images</th><th>PSNR (dB)</th><th>SSIM</th>
<th>bicubic PSNR</th><th>gain</th><th>s / image</th></tr>{summary_rows}</table>
<p><label>Show <select id="filter"><option value="">every dataset and scale</option>{options}</select></label></p>
<h2>Best and worst images (by gain over bicubic)</h2>
<div id="crops">{figures or "<p>No SR images were saved (--no_save): no crops.</p>"}</div>
<h2>Images</h2>
<table id="images"><tr>{"".join(f"<th class='sortable' data-col='{i}'>{c}</th>" for i, c in enumerate(COLUMNS))}</tr>
{image_rows}</table>
<script>{SCRIPT}</script></body></html>
"""


def write_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report.html`` for an evaluation's folder (the one holding ``summary.json``)."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").is_file():
        raise ReportError(f"{run_dir}: no summary.json here (run sample.py on benchmarks first, and give the "
                          f"folder that holds its summary.json)")
    try:
        return write_text(run_dir / "report.html", render(run_dir))
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # fields of the wrong type, too
        raise ReportError(f"{run_dir / 'summary.json'}: not a summary this version can read ({e})") from None
