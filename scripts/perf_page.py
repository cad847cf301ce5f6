"""Make docs/performance.md from the measurements under assets/perf/ (no figure is copied by hand).

    python scripts/perf_page.py

Reads the JSON files ``scripts/bench_inference.py --json`` wrote (``peers_*.json``: the project against ONNX
Runtime and OpenVINO; ``tiles.json``: the default tile choice against the whole image), the memory benchmark's
``memory.json`` (``scripts/bench_memory.py --json``) and the GPU report of ``scripts/device_check.py``
(``device_*.md``), and writes the page with the date, CPU model, ISA and library versions of each run.
Cells where the project trails a peer are named, with the reason given in ``TRAILING`` below.
"""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PERF = ROOT / "assets" / "perf"
PAGE = ROOT / "docs" / "performance.md"

# Why the project trails a peer where it does, measured: (configuration label prefix, None, None) -> the reason
# for every trailing cell of that run; (label prefix, model, scale) -> what adds to it in one cell.
TRAILING: dict[tuple[str, str | None, float | None], str] = {
    ("API defaults (bf16 on AMX-BF16)", "carn_m", 3.0):
        "its x3 tail (a grouped 3x3 conv 64 -> 576, pixel shuffle by 3, the exit conv) has no AMX kernel (the "
        "bf16 shuffle exit is vdpbf16ps, half the float32 FMA's rate there): it runs the float32 shuffle-exit "
        "kernel, so the conv before it writes a float32 576-channel map, nine times the input's pixels at 64 "
        "channels, where OpenVINO stays in bf16.",
    ("API defaults (bf16 on AVX512-BF16, AMD Zen 5)", None, None):
        "the spread of one timed turn per side on this machine, not a slower path: these cells run the same code "
        "as in the three runs before the one-pass overscaling tail (commit caee41f's page), where they led "
        "(CARN-M x3 1.05-1.30x, x4 1.11-1.18x, CARN x4 1.11-1.30x), and over these three runs the same cell "
        "took the project 145-221 ms (CARN-M x4) and OpenVINO 164-223 ms.",
    ("precision fp32, against OpenVINO's defaults", None, None):
        "float32 (`--fp32`) against OpenVINO's bf16 on AMX-BF16. The like-for-like comparison is the bf16 "
        "default above; this series is what choosing float32 costs on such a CPU.",
    ("API defaults, streamed kernels off", None, None):
        "oneDNN only, the configuration the streamed kernels were written to replace. Every conv is then one "
        "library call that reads and writes a whole 64-channel map (59 MB at 640x360), and PyTorch's oneDNN "
        "binding copies a strided input or output first, so each block output is copied into the cascade "
        "buffer; the peers plan the whole graph's memory. Measured alone at 640x360, a residual-E block takes "
        "150-170 ms as oneDNN calls against 44-55 ms streamed, CARN-M's tail 267-285 ms against 87-104 ms "
        "([fast-path.md](fast-path.md#the-streamed-cpu-kernels)).",
    ("API defaults, streamed kernels off", "overnet_x4", 2.0):
        "beyond that, without the one-pass shuffle and resize the 1.5 GB overscaled map is made: the forward's "
        "working set (3.6 GiB) exceeds the 3 GiB tile budget, so the image runs as two tiles plus the pass that "
        "gathers OverNet's pooled statistics.",
    ("API defaults, AVX2 kernels forced", None, None):
        "the AVX2 build forced on an AVX-512 CPU: the project gives up half its vector width while ONNX Runtime "
        "and OpenVINO keep their AVX-512 kernels. On an AVX2-only CPU they lose that width too. Against oneDNN "
        "held to AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`, the engine OpenVINO builds on), the API with the AVX2 kernels "
        "took, over two runs each at 1280x720 output: CARN-M x2 1.20-1.22 s against 1.90-1.96 s, x3 0.71-0.76 s "
        "against 0.86-0.89 s; CARN x2 1.84-1.88 s against 2.97-3.05 s, x3 1.05-1.08 s against 1.42-1.50 s.",
}


def _reason(label: str, model: str | None, scale: float | None) -> str | None:
    """The TRAILING entry for a cell of the run labelled ``label`` (``model`` and ``scale`` None: the run's
    general reason); a cell's own entry, if any, else None."""
    key = next((k for k in TRAILING if label.startswith(k[0]) and k[1] == model and k[2] == scale), None)
    return TRAILING[key] if key else None


SIDES = ("onnxruntime", "openvino", "openvino_default")


def _precisions(runs: list[dict]) -> str:
    """What precision each side ran, as the runs recorded it (ONNX Runtime's CPU provider runs float32)."""
    def name(value: object) -> str:  # OpenVINO reports its element type as <Type: 'bfloat16'>
        return str(value).removeprefix("<Type: '").removesuffix("'>")
    present = [s for s in ("project", "onnxruntime", "openvino", "openvino_default") if f"{s}_ms" in runs[0]["rows"][0]]
    seen = {side: sorted({name(row.get(f"{side}_precision", "fp32" if side == "project" else "float32"))
                          for r in runs for row in r["rows"]}) for side in present}
    return "Precision each side ran: " + "; ".join(
        ("the project " if side == "project" else f"`{side}` ") + ", ".join(v) for side, v in seen.items()) \
        + " (OpenVINO's as it reports it)."


def _cell(row: dict) -> str:
    return f"{row['model']} x{row['scale']:g}"


def _machine(m: dict) -> str:
    parts = [m.get("cpu", "CPU"), f"ISA {m.get('isa')}", f"{m.get('threads')} threads", f"torch {m.get('torch')}",
             f"ONNX Runtime {m.get('onnxruntime', '-')}", f"OpenVINO {m.get('openvino', '-')}",
             f"streamed kernels this CPU runs: {m.get('kernels')}"]
    return f"{m.get('date', '')[:10]}, " + ", ".join(parts)


def _series(r: dict) -> str:
    """A run's label without its run number: the runs of one series share a table."""
    return r.get("label", "").rsplit(", run ", 1)[0]


def peers_tables(runs: list[dict]) -> list[str]:
    out = []
    api = [r for r in runs if r.get("project") == "api" and r.get("kernels") == "auto"]
    series: dict[str, list[dict]] = {}
    for r in api:
        series.setdefault(_series(r), []).append(r)
    for name, rs in series.items():
        out += api_table(name, rs)

    others = [r for r in runs if not (r.get("project") == "api" and r.get("kernels") == "auto")]
    for r in others:
        sides = [s for s in SIDES if f"{s}_ms" in r["rows"][0]]
        out += [f"## {r['label']}", "", f"Kernels used `{r['kernels']}`, project `{r['project']}`; "
                f"{_machine(r['machine'])}.", "",
                "| model | scale | project ms | " + " | ".join(f"{s} ms | vs {s}" for s in sides) + " |",
                "|---|---|---|" + "---|---|" * len(sides)]
        trailing = []
        for row in r["rows"]:
            out.append(f"| {row['model']} | x{row['scale']:g} | {row['project_ms']:.0f} | " + " | ".join(
                f"{row[f'{s}_ms']:.0f} | {row[f'project_vs_{s}']:.2f}x" for s in sides) + " |")
            for s in sides:
                if row[f"project_vs_{s}"] < 1:
                    why = _reason(r["label"], row["model"], row["scale"])
                    trailing.append(f"- {_cell(row)} trails {s} ({row[f'project_vs_{s}']:.2f}x)" +
                                    (f": {why}" if why else ""))
        general = _reason(r["label"], None, None)
        out += ["", *([f"Where the project trails, and why: {general or 'not yet explained.'}", "", *trailing]
                      if trailing else ["The project leads every peer in every cell of this run."]), ""]
    return out


def api_table(name: str, api: list[dict]) -> list[str]:
    """One table for the runs of one series of the API at its defaults (``name``: the series' label)."""
    heading = ("float32, the API's defaults until bf16 became `auto` on AMX-BF16, against ONNX Runtime and OpenVINO"
               if name == "API defaults" else name)
    out: list[str] = []
    sides = [s for s in SIDES if f"{s}_ms" in api[0]["rows"][0]]
    out += [f"## {heading}", "",
            "`python scripts/bench_inference.py --peers --all_cells --project api --json ...`: `srkit.api`'s "
            "`Upscaler` with its defaults on a tensor (tiles chosen per image, the fast path, the streamed "
            f"kernels this CPU runs, `precision=\"{api[0].get('precision', 'auto')}\"`) against ONNX Runtime's "
            "CPU provider, OpenVINO set to float32 (`openvino`) and OpenVINO with its defaults "
            "(`openvino_default`, no precision hint) on the project's own ONNX export of the same weights. "
            "1280x720 output, every side in its own process with the same threads, the sides taking turns; "
            f"median of {api[0].get('runs', 3)} per run; the times are run 1's. The ratio is the peer's time "
            "over the project's (above 1: the project is faster).", "", _precisions(api), "",
            "| model | scale | project ms | " + " | ".join(f"{s} ms" for s in sides) + " | " +
            " | ".join(f"vs {s}, run " + ", ".join(str(i + 1) for i in range(len(api))) for s in sides) + " |",
            "|---|---|---|" + "---|" * len(sides) * 2]
    for i, row in enumerate(api[0]["rows"]):
        ratios = [" / ".join(f"{r['rows'][i][f'project_vs_{s}']:.2f}x" for r in api) for s in sides]
        out.append(f"| {row['model']} | x{row['scale']:g} | {row['project_ms']:.0f} | " +
                   " | ".join(f"{row[f'{s}_ms']:.0f}" for s in sides) + " | " + " | ".join(ratios) + " |")
    worst = {s: min(r["rows"][i][f"project_vs_{s}"] for r in api for i in range(len(r["rows"]))) for s in sides}
    out += ["", "Lowest ratio over every cell and run: " + ", ".join(f"{s} {v:.2f}x" for s, v in worst.items())
            + ". Largest output difference from a peer: "
            + f"{max(row[f'{s}_diff'] for r in api for row in r['rows'] for s in sides):.1e}.", "",
            "Machines: " + "; ".join(f"run {i + 1}: {_machine(r['machine'])}" for i, r in enumerate(api)), ""]
    trailing = [f"- {_cell(row)} trails {s} ({min(r['rows'][i][f'project_vs_{s}'] for r in api):.2f}x at worst)"
                + (f": {why}" if (why := _reason(name, row["model"], row["scale"])) else "")
                for i, row in enumerate(api[0]["rows"]) for s in sides
                if min(r["rows"][i][f"project_vs_{s}"] for r in api) < 1]
    if trailing:
        general = _reason(name, None, None)
        out += [f"Where the project trails, and why: {general or 'see each cell.'}", "", *trailing, ""]
    return out


def tiles_table(t: dict) -> list[str]:
    out = ["## The default tiles against the whole image", "",
           "`python scripts/bench_inference.py --tiles --all_cells --json ...`: the API's default tile choice "
           "against `tile=0` (the whole image) in one process, taking turns; 1280x720 output, median of "
           f"{t['runs']}. Where the default chooses the whole image, both columns do the same work and their "
           f"difference is this machine's run-to-run noise. {_machine(t['machine'])}.", "",
           "| model | scale | tiles chosen | default ms | whole image ms | cost |", "|---|---|---|---|---|---|"]
    for row in t["rows"]:
        out.append(f"| {row['model']} | x{row['scale']:g} | {row['tiles']} | {row['default_ms']:.0f} | "
                   f"{row['whole_ms']:.0f} | {100 * (row['default_ms'] / row['whole_ms'] - 1):+.1f}% |")
    return out + [""]


def memory_table(m: dict) -> list[str]:
    out = ["## Memory, flat in the image size", "",
           "`python scripts/bench_memory.py --json ...`: `carn/sample.py --input` on one random LR image, each "
           "case in a fresh process; peak resident memory (everything the process holds) and wall time. "
           f"{_machine(m['machine'])}.", "",
           "| LR size | scale | setting | peak RSS | seconds | default over --plain |", "|---|---|---|---|---|---|"]
    for row in m["rows"]:
        out.append(f"| {row['size']} | x{row['scale']} | {row['setting']} | {row['peak_gb']:.2f} GB | "
                   f"{row['seconds']:.1f} | {row.get('speedup', '')} |")
    return out + [""]


# sections other scripts write into the page between these markers (scripts/int8_probe.py --md): kept as they are
KEPT = (("<!-- int8:begin", "<!-- int8:end -->"),)


def kept_sections(page: Path) -> str:
    """The marked sections of the page as it stands, to append to the regenerated page ("" where none)."""
    old = page.read_text() if page.is_file() else ""
    out = ""
    for begin, end in KEPT:
        if begin in old and end in old[old.index(begin):]:
            block = old[old.index(begin):]
            out += "\n" + block[:block.index(end) + len(end)] + "\n"
    return out


def main() -> None:
    runs = [json.loads(p.read_text()) for p in sorted(PERF.glob("peers_*.json"))]
    runs.sort(key=lambda r: (r.get("project") != "api" or r.get("kernels") != "auto", r.get("label", "")))
    lines = ["# Performance", "", "Made by `scripts/perf_page.py` from the measurements in `assets/perf/`; do not "
             "edit by hand. How the fast path gets there: [fast-path.md](fast-path.md).", ""]
    lines += peers_tables(runs)
    if (PERF / "tiles.json").is_file():
        lines += tiles_table(json.loads((PERF / "tiles.json").read_text()))
    if (PERF / "memory.json").is_file():
        lines += memory_table(json.loads((PERF / "memory.json").read_text()))
    for report in sorted(PERF.glob("device_*.md")):
        body = report.read_text().strip().splitlines()
        lines += ["## GPU", "", f"`scripts/device_check.py` on {body[0].removeprefix('# Device check: ')} "
                  f"({report.name}):", "", *["#" + x if x.startswith("## ") else x for x in body[1:]], ""]
    PAGE.write_text("\n".join(lines).rstrip() + "\n" + kept_sections(PAGE))
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
