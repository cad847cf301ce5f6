"""Regenerate the README results table from real runs of whatever weights and benchmarks are present.

    python scripts/results_table.py --weights carn_m=checkpoint/carn_m.pth \
        --benchmarks datasets/benchmark/Set5 datasets/benchmark/Set14 [--self_ensemble]

Each model is evaluated with the project's sampler (Y-channel PSNR/SSIM, MATLAB protocol) and shown beside
the figure its paper prints, with the difference. The table replaces the block between the
``<!-- results:start -->`` and ``<!-- results:end -->`` markers in README.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
import torch

from srkit import registry
from srkit.models import load_model
from srkit.sampler import Predictor, evaluate_folder

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
    return net, list(fam.default_scales(arch)), arch["model"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", required=True, help="name=path pairs")
    p.add_argument("--benchmarks", nargs="+", required=True)
    p.add_argument("--self_ensemble", action="store_true", help="also measure the x8 self-ensemble")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = p.parse_args(argv)
    dev = torch.device("cpu")
    lines = ["| model | set | scale | PSNR (ours) | paper | delta | SSIM (ours) | paper | delta |"
             + (" PSNR x8 ensemble | gain |" if args.self_ensemble else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if args.self_ensemble else "")]
    for item in args.weights:
        name, path = item.split("=", 1)
        net, scales, family = load(name, path)
        for bench in args.benchmarks:
            for s in scales:
                r = evaluate_folder(Predictor(net), Path(bench), s, None, dev).summary()
                ref = PAPER.get((family, Path(bench).name), {}).get(s)
                pp, ps = (f"{ref[0]:.2f}", f"{ref[1]:.4f}") if ref else ("-", "-")
                dp = f"{r['psnr'] - ref[0]:+.2f}" if ref else "-"
                ds = f"{r['ssim'] - ref[1]:+.4f}" if ref else "-"
                row = f"| {name} | {Path(bench).name} | x{s} | {r['psnr']:.3f} | {pp} | {dp} | {r['ssim']:.4f} | {ps} | {ds} |"
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
