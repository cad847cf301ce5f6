"""The benchmarks the papers report, in one command, verified file by file.

    python datasets/download.py Set5 Set14 B100 Urban100        # or: srkit-benchmarks ...

Source: the SelfExSR release (Huang et al., CVPR 2015) on GitHub, the images both papers evaluate on. Every
file is checked against the size and git blob SHA-1 recorded in ``srkit/selfexsr.json`` before it gets its
final name; files already there and intact are not fetched again, and an interrupted file resumes. The sets
are laid out as ``<root>/<Set>/x<s>/img_NNN_SRF_<s>_HR.png`` + ``_LR.png`` (srkit.benchmark's layout a).

Traps of the release, handled here: BSD100 is B100. Urban100 ships no x3, and its image_SRF_2 HR files are
downscaled by 2 (scoring x2 on them gives about 0.45 dB less than the papers). So only Urban100's image_SRF_4
is fetched: its x4 pairs are the release's own (LR made by MATLAB from the full-resolution HR, as the papers
used), and x2 / x3 are built from those full-resolution HR files with the MATLAB-exact imresize (HR cropped
to a multiple of s). ``$SRKIT_MIRROR`` (srkit.zoo) serves the files from a mirror URL or folder instead.
"""
from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from srkit.benchmark import crop_to_scale, make_lr
from srkit.imageio import ImageError, read_rgb8, write_png
from srkit.zoo import MIRROR_ENV, DownloadError, fetch, mirrored

RELEASE_PATH = Path(__file__).with_name("selfexsr.json")
SETS = {"Set5": "Set5", "Set14": "Set14", "B100": "BSD100", "Urban100": "Urban100"}  # ours -> release's
BUILT_FROM_X4 = {"Urban100": (2, 3)}  # scales made from the full-resolution x4 HR instead of fetched
DEFAULT_ROOT = Path("datasets/benchmark")


def release() -> dict:
    return json.loads(RELEASE_PATH.read_text())


def plan(name: str) -> list[tuple[str, Path, dict]]:
    """(release path, path under the set's folder, expected size/hash) of every file ``name`` fetches."""
    if name not in SETS:
        raise DownloadError(f"unknown benchmark {name!r}; known: {', '.join(SETS)}")
    rel = SETS[name]
    out = []
    for path, (size, blob) in release()["files"].items():
        parts = path.split("/")  # data/<Set>/image_SRF_<s>/<file>
        if parts[1] != rel:
            continue
        s = int(parts[2].rsplit("_", 1)[1])
        if name in BUILT_FROM_X4 and s != 4:
            continue
        out.append((path, Path(f"x{s}") / parts[3], {"size": size, "git_blob_sha1": blob}))
    return out


def fetch_set(name: str, root: Path = DEFAULT_ROOT, timeout: float = 30, progress: bool = True,
              workers: int = 4) -> Path:
    """Fetch (and, for Urban100, build) benchmark ``name`` under ``root``; returns its folder."""
    folder = root / name
    files = plan(name)
    prefix = release()["raw_url_prefix"]

    def one(item):
        path, rel, expect = item
        try:
            fetch(mirrored(prefix + path, path), folder / rel, expect, timeout, progress=False)
            return None
        except DownloadError as e:
            return str(e)

    with ThreadPoolExecutor(workers) as pool:
        errors = [e for e in tqdm(pool.map(one, files), total=len(files), desc=name, unit="file",
                                  disable=not progress) if e]
    if errors:
        raise DownloadError(
            f"{name}: {len(errors)} of {len(files)} files failed, e.g. {errors[0]}" + "".join(
                f"\n  {e}" for e in errors[1:4]) + f"\nRun again to resume. Without network access, put the "
            f"release's data/{SETS[name]}/image_SRF_<s>/ files into {folder}/x<s>/ (or set {MIRROR_ENV} to a folder or URL holding "
            f"the release's data/ tree)")
    for s in BUILT_FROM_X4.get(name, ()):
        build_from_x4(folder, s, progress)
    return folder


def build_from_x4(folder: Path, scale: int, progress: bool = True) -> None:
    """``x<scale>/`` pairs from the full-resolution HR files of ``x4/``: HR cropped to a multiple of the
    scale, LR by the MATLAB-exact bicubic imresize. Pairs already written are kept."""
    hrs = sorted((folder / "x4").glob("*_SRF_4_HR.png"))
    for hr_path in tqdm(hrs, desc=f"{folder.name} x{scale} from x4 HR", unit="img", disable=not progress):
        stem = hr_path.name.replace("_SRF_4_HR.png", f"_SRF_{scale}")
        out_hr, out_lr = folder / f"x{scale}" / f"{stem}_HR.png", folder / f"x{scale}" / f"{stem}_LR.png"
        if out_hr.exists() and out_lr.exists():
            continue
        hr = crop_to_scale(read_rgb8(hr_path), scale)
        write_png(out_lr, make_lr(hr, scale))
        write_png(out_hr, hr)  # written last: a pair with its HR is complete


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="+", choices=[*SETS, "all"], help="benchmarks to fetch")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="where the benchmark folders go")
    a = p.parse_args(argv)
    failed = 0
    for name in (list(SETS) if "all" in a.names else a.names):
        try:
            print(f"{name}: {fetch_set(name, a.root)}")
        except (DownloadError, ImageError) as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
