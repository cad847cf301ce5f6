"""The benchmarks the papers report, in one command, verified file by file.

    python datasets/download.py Set5 Set14 B100 Urban100        # or: srkit-benchmarks ...

Source: the SelfExSR release (Huang et al., CVPR 2015) on GitHub, the images both papers evaluate on. Every
file is checked against the size and git blob SHA-1 recorded in ``selfexsr.json`` (beside this module) before it gets its
final name; files already there and intact are not fetched again, and an interrupted file resumes. The sets
are laid out as ``<root>/<Set>/x<s>/img_NNN_SRF_<s>_HR.png`` + ``_LR.png`` (srkit.data.benchmark's layout a).

Traps of the release, handled here: BSD100 is B100. Urban100 ships no x3, and its image_SRF_2 HR files are
downscaled by 2 (scoring x2 on them gives about 0.45 dB less than the papers). So only Urban100's image_SRF_4
is fetched: its x4 pairs are the release's own (LR made by MATLAB from the full-resolution HR, as the papers
used), and x2 / x3 are built from those full-resolution HR files with the MATLAB-exact imresize (HR cropped
to a multiple of s).

Mirrors (``$SRKIT_MIRROR``, for machines without internet): a base URL or a folder holding the release's tree
(``<mirror>/data/Set5/image_SRF_4/img_001_SRF_4_HR.png``, ...), or a folder in this project's own layout
(``<mirror>/Set5/x4/img_001_SRF_4_HR.png``, e.g. another machine's ``datasets/benchmark``). Either way every
file is verified against the same hashes.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from srkit.data.benchmark import crop_to_scale, make_lr
from srkit.data.imageio import read_rgb8, write_png
from srkit.core.fetch import MIRROR_ENV, DownloadError, fetch, mirrored
from srkit.core.provenance import ROOT

RELEASE_PATH = Path(__file__).with_name("selfexsr.json")
SETS = {"Set5": "Set5", "Set14": "Set14", "B100": "BSD100", "Urban100": "Urban100"}  # ours -> release's
BUILT_FROM_X4 = {"Urban100": (2, 3)}  # scales made from the full-resolution x4 HR instead of fetched


def default_root() -> Path:
    """Where the benchmark folders are by default: ``datasets/benchmark`` of the working directory when it has a
    ``datasets/`` folder (a checkout, or the user's own layout), else of the repository checkout the package
    runs from (so a run from another folder finds and fetches into the checkout), else of the working
    directory."""
    here = Path("datasets")
    if not here.is_dir() and (ROOT / "pyproject.toml").is_file() and (ROOT / "datasets").is_dir():
        return ROOT / "datasets" / "benchmark"
    return here / "benchmark"


def source(name: str) -> str:
    """Where :func:`fetch_set` takes ``name`` from, in words."""
    own = _own_layout_mirror(name)
    if own is not None:
        return f"the mirror folder {own} ({MIRROR_ENV})"
    if os.environ.get(MIRROR_ENV):
        return f"the mirror {os.environ[MIRROR_ENV]} ({MIRROR_ENV}), laid out as the SelfExSR release"
    return f"the SelfExSR release ({release()['raw_url_prefix']})"


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


def _own_layout_mirror(name: str) -> Path | None:
    """``$SRKIT_MIRROR/<name>/`` when the mirror is a local folder in this project's layout (x<s>/ pairs)."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror or "://" in mirror:
        return None
    candidate = Path(mirror) / name
    return candidate if candidate.is_dir() and any(candidate.glob("x*/*_HR.png")) else None


def fetch_set(name: str, root: Path | None = None, timeout: float = 30, progress: bool = True,
              workers: int = 4) -> Path:
    """Fetch (and, for Urban100, build) benchmark ``name`` under ``root`` (default :func:`default_root`);
    returns its folder. A failed fetch leaves the verified files it got (the next run resumes) and no empty
    folders behind (nor the parents it made)."""
    root = default_root() if root is None else Path(root)
    folder = root / name
    files = plan(name)
    prefix = release()["raw_url_prefix"]
    made = [d for d in [*{folder / rel.parent for _, rel, _ in files}, folder, *folder.parents] if not d.exists()]

    own_layout = _own_layout_mirror(name)

    def one(item):
        path, rel, expect = item
        src = str(own_layout / rel) if own_layout is not None else mirrored(prefix + path, path)
        try:
            fetch(src, folder / rel, expect, timeout, progress=False)
            return None
        except DownloadError as e:
            return str(e)

    errors = []
    with ThreadPoolExecutor(workers) as pool:
        bar = tqdm(pool.map(one, files), total=len(files), desc=name, unit="file", disable=not progress)
        for e in bar:
            if e:
                errors.append(e)
                bar.set_postfix(failed=len(errors))
    if errors:
        for d in sorted(made, key=lambda p: -len(p.parts)):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise DownloadError(
            f"{name}: {len(errors)} of {len(files)} files failed, e.g. {errors[0]}" + "".join(
                f"\n  {e}" for e in errors[1:4]) + f"\nRun again to resume. Without network access, put the "
            f"release's data/{SETS[name]}/image_SRF_<s>/ files into {folder}/x<s>/ (or set {MIRROR_ENV} to a folder "
            f"or URL holding the release's data/ tree, or a folder in this project's benchmark layout: "
            f"<mirror>/{name}/x<s>/; docs/datasets.md)")
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
