"""Regenerate the README results table from real runs of whatever weights and benchmarks are present.

    python scripts/results_table.py [--weights carn_m overnet_x4=path.pth] [--benchmarks datasets/benchmark/Set5 ...]
        [--self_ensemble]

Defaults: every manifest weight already downloaded (nothing is fetched) and every one of Set5, Set14, B100
and Urban100 present in datasets/benchmark/ (``python datasets/download.py ...`` fetches them). Each model is
evaluated with the project's sampler (Y-channel PSNR/SSIM, MATLAB protocol) and shown beside the figure its
paper prints and, where it was measured, what the authors' own code gives with the same weights, images and
protocol. The table replaces the block between the ``<!-- results:start -->`` and ``<!-- results:end -->``
markers in README.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from srkit.core import registry
from srkit.weights import zoo
from srkit.data.benchmark import scale_tag
from srkit.data.download import DEFAULT_ROOT, SETS
from srkit.weights.load import load_model
from srkit.inference.evaluate import evaluate_folder
from srkit.inference.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]

# What the authors' own code gives with the released weights (PSNR, SSIM). CARN-M: the project's reference
# measurement (released_carn_m_official_code.csv: the authors' model code, the same images and protocol).
# OverNet: the authors' README, whose updated results for the released models replace the paper's.
AUTHORS_CODE = {
    ("carn_m", "Set5"): {2: (37.605, .9585), 3: (34.029, .9237), 4: (31.865, .8899)},
    ("carn_m", "Set14"): {2: (33.281, .9144), 3: (30.091, .8369), 4: (28.413, .7764)},
    ("carn_m", "B100"): {2: (31.953, .8964), 3: (28.930, .8004), 4: (27.445, .7307)},
    ("overnet", "Set5"): {2: (38.11, .9608), 3: (34.46, .9273), 4: (32.26, .8958)},
    ("overnet", "Set14"): {2: (33.71, .9183), 3: (30.41, .8429), 4: (28.64, .7821)},
    ("overnet", "B100"): {2: (32.24, .8999), 3: (29.11, .8053), 4: (27.59, .7364)},
    ("overnet", "Urban100"): {2: (32.44, .9304), 3: (28.29, .8541), 4: (26.18, .7879)},
}

# PSNR / SSIM printed in the CARN paper (ECCV 2018, Table) and the OverNet paper (WACV 2021).
PAPER = {
    ("carn", "Set5"): {2: (37.76, .9590), 3: (34.29, .9255), 4: (32.13, .8937)},
    ("carn", "Set14"): {2: (33.52, .9166), 3: (30.29, .8407), 4: (28.60, .7806)},
    ("carn", "B100"): {2: (32.09, .8978), 3: (29.06, .8034), 4: (27.58, .7349)},
    ("carn", "Urban100"): {2: (31.92, .9256), 3: (28.06, .8493), 4: (26.07, .7837)},
    ("carn_m", "Set5"): {2: (37.53, .9583), 3: (33.99, .9236), 4: (31.92, .8903)},
    ("carn_m", "Set14"): {2: (33.26, .9141), 3: (30.08, .8367), 4: (28.42, .7762)},
    ("carn_m", "B100"): {2: (31.92, .8960), 3: (28.91, .8000), 4: (27.44, .7304)},
    ("carn_m", "Urban100"): {2: (31.23, .9193), 3: (27.55, .8385), 4: (25.62, .7694)},
    ("overnet", "Set5"): {2: (38.11, .9610), 3: (34.49, .9267), 4: (32.32, .8956)},
    ("overnet", "Set14"): {2: (33.71, .9179), 3: (30.47, .8436), 4: (28.71, .7826)},
    ("overnet", "B100"): {2: (32.24, .9007), 3: (29.17, .8063), 4: (27.67, .7373)},
    ("overnet", "Urban100"): {2: (32.44, .9311), 3: (28.37, .8572), 4: (26.31, .7923)},
}


def load(name: str, path: str):
    """(model, the scales it is benchmarked at, its model name) for any registered family's checkpoint."""
    net, arch = load_model(path)
    fam = registry.get(arch["family"])
    return net, [int(s) if float(s).is_integer() else s for s in fam.default_scales(arch)], arch["model"]


def _weights(asked: list[str] | None) -> list[tuple[str, str]]:
    if asked:
        return [tuple(w.split("=", 1)) if "=" in w else (w, w) for w in asked]
    here = zoo.weights_dir()
    return [(n, n) for n, e in zoo.manifest().items() if (here / e.file).is_file()]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", default=None, help="manifest names or name=path pairs")
    p.add_argument("--benchmarks", nargs="+", default=None)
    p.add_argument("--self_ensemble", action="store_true", help="also measure the x8 self-ensemble")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = p.parse_args(argv)
    benches = args.benchmarks or [str(DEFAULT_ROOT / s) for s in SETS if (DEFAULT_ROOT / s).is_dir()]
    weights = _weights(args.weights)
    if not weights or not benches:
        raise SystemExit(f"nothing to run: weights {weights or 'none downloaded'}, benchmarks {benches or 'none'}")
    dev = torch.device("cpu")
    lines = ["| model | set | scale | PSNR (ours) | authors' code | paper | delta to paper | SSIM (ours) | "
             "authors' code | paper | delta to paper |" + (" PSNR x8 ensemble | gain |" if args.self_ensemble else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if args.self_ensemble else "")]
    for name, path in weights:
        net, scales, model = load(name, path)
        for bench in benches:
            for s in scales:
                r = evaluate_folder(Predictor(net), Path(bench), s, None, dev).summary()
                ref = PAPER.get((model, Path(bench).name), {}).get(s)
                own = AUTHORS_CODE.get((model, Path(bench).name), {}).get(s)
                pp, ps = (f"{ref[0]:.2f}", f"{ref[1]:.4f}") if ref else ("-", "-")
                ap, as_ = (f"{own[0]:g}", f"{own[1]:.4f}") if own else ("-", "-")
                dp = f"{r['psnr'] - ref[0]:+.2f}" if ref else "-"
                ds = f"{r['ssim'] - ref[1]:+.4f}" if ref else "-"
                row = (f"| {name} | {Path(bench).name} | {scale_tag(s)} | {r['psnr']:.3f} | {ap} | {pp} | {dp} | "
                       f"{r['ssim']:.4f} | {as_} | {ps} | {ds} |")
                if args.self_ensemble:
                    e = evaluate_folder(Predictor(net, ensemble=True), Path(bench), s, None, dev).summary()
                    row += f" {e['psnr']:.3f} | {e['psnr'] - r['psnr']:+.3f} |"
                lines.append(row)
                print(row, flush=True)
    text = args.readme.read_text()
    a, b = "<!-- results:start -->", "<!-- results:end -->"
    if a in text and b in text:
        head, rest = text.split(a, 1)
        _, tail = rest.split(b, 1)
        args.readme.write_text(head + a + "\n" + "\n".join(lines) + "\n" + b + tail)
        print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
