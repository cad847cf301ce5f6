"""Pack DIV2K into one h5 file for training (RGB uint8, groups HR, X2, X3, X4; datasets "0", "1", ... in
filename order).

    python div2h5.py --div2k datasets/DIV2K --out datasets/DIV2K_train.h5
    python div2h5.py --toy 16 --div2k datasets/toy/DIV2K --out datasets/toy/train.h5   # a run of a minute

Input: ``DIV2K_train_HR/0001.png`` and ``DIV2K_train_LR_bicubic/X<s>/0001x<s>.png``. A missing X<s> folder is
generated from HR with the MATLAB-compatible bicubic imresize (HR cropped to a multiple of s). Counts, names
and sizes are checked (a clear error names the file). The file is written under a temporary name and
renamed at the end, so an interrupted run never leaves a half-written h5 under the final name. An existing
--out built from the same files (names, sizes, modification times) is kept; one built from other files is
refused unless --overwrite; --out is never one of the input images, even with --overwrite.
A damaged or unreadable image is named in one line; every image is read, every bad one named, and no h5 is
written (a training set missing images would train silently on less): exit 1.
(The OverNet authors' div2h5.py stored BGR via cv2; this stores RGB, as both models are trained on.)
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import h5py
from PIL import Image
from tqdm import tqdm

from srkit.cli.flags import non_negative_int
from srkit.core.atomic import atomic_write
from srkit.data.benchmark import crop_to_scale, make_lr
from srkit.data.toy import make_toy_div2k
from srkit.data.imageio import ImageError, read_rgb8

SCALES = (2, 3, 4)


class BadImages(Exception):
    """Input images that could not be read: ``lines`` names each file and the reason."""

    def __init__(self, lines: list[str], total: int) -> None:
        super().__init__(f"{len(lines)} of {total} images could not be read")
        self.lines, self.total = lines, total


def _read(path: Path):
    """The image as RGB uint8, or the one-line reason it cannot be (Pillow raises many types on damaged files)."""
    try:
        return read_rgb8(path), None
    except ImageError as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - OSError, SyntaxError, ValueError, IndexError, ... from one bad file
        why = str(e).splitlines()[0][:200] if str(e) else ""
        return None, f"{path}: unreadable ({type(e).__name__}{': ' + why if why else ''})"


def _list_hr(hr_dir: Path) -> tuple[list[Path], list[str]]:
    """The HR PNGs, and the names of the other files in the folder (skipped, and said so)."""
    if not hr_dir.is_dir():
        raise FileNotFoundError(f"{hr_dir}: missing (expected DIV2K_train_HR/0001.png ...)")
    files = sorted(hr_dir.glob("*.png"))
    if not files:
        raise FileNotFoundError(f"{hr_dir}: no PNG images")
    others = sorted(p.name for p in hr_dir.iterdir() if p.suffix != ".png" and not p.name.startswith("."))
    return files, others


def _lr_path(lr_dir: Path, hr: Path, s: int) -> Path:
    return lr_dir / f"X{s}" / f"{hr.stem}x{s}.png"


def check_lr_folder(lr_dir: Path, hrs: list[Path], s: int) -> None:
    """Every HR has its LR partner and no stray LR exists."""
    names = {p.name for p in (lr_dir / f"X{s}").glob("*.png")}
    want = {f"{h.stem}x{s}.png" for h in hrs}
    if names != want:
        missing, extra = sorted(want - names), sorted(names - want)
        raise FileNotFoundError(f"{lr_dir / f'X{s}'}: {len(hrs)} HR images but {len(names)} LR images"
                                + (f"; missing {missing[:3]}" if missing else "") + (f"; unexpected {extra[:3]}" if extra else ""))


def inputs_digest(hrs: list[Path], lr_files: list[Path], scales: tuple[int, ...]) -> str:
    """What an h5 was built from: the scales and each input file's name, size and modification time."""
    h = hashlib.sha256(repr(tuple(scales)).encode())
    for p in [*hrs, *lr_files]:
        st = p.stat()
        h.update(f"{p.parent.name}/{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _existing_digest(out: Path) -> str | None:
    try:
        with h5py.File(out, "r") as f:
            return str(f.attrs.get("inputs_sha256", ""))
    except OSError:
        return None


def build_h5(div2k: Path, out: Path, scales: tuple[int, ...] = SCALES, overwrite: bool = False) -> dict:
    """Write ``out`` (see the module docstring); the result says how many images, which LR scales were
    generated, which files were skipped or converted, and whether an up-to-date ``out`` was ``kept``."""
    hr_dir, lr_dir = div2k / "DIV2K_train_HR", div2k / "DIV2K_train_LR_bicubic"
    hrs, skipped = _list_hr(hr_dir)
    generate = {s: not (lr_dir / f"X{s}").is_dir() for s in scales}
    for s in scales:
        if not generate[s]:
            check_lr_folder(lr_dir, hrs, s)
    lr_files = [_lr_path(lr_dir, h, s) for s in scales if not generate[s] for h in hrs]
    digest = inputs_digest(hrs, lr_files, scales)
    info = {"images": len(hrs), "generated": [s for s in scales if generate[s]], "skipped": skipped,
            "grayscale": [], "kept": False}
    if out.is_dir():
        raise FileExistsError(f"--out {out}: a folder; give the h5 file to write")
    if out.exists() and any(out.samefile(q) for q in [*hrs, *lr_files]):
        raise FileExistsError(f"--out {out}: is one of the input images; div2h5 never writes onto its input")
    if out.exists() and not overwrite:
        if _existing_digest(out) == digest:
            return {**info, "kept": True}
        raise FileExistsError(f"{out}: exists and was not built from these files; pass --overwrite to replace "
                              f"it, or choose another --out")

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            groups = {"HR": f.create_group("HR"), **{s: f.create_group(f"X{s}") for s in scales}}
            bad: list[str] = []
            for i, hr_path in enumerate(tqdm(hrs, desc="div2h5", unit="img")):
                hr, why = _read(hr_path)
                if hr is None:
                    bad.append(why)
                    continue
                with Image.open(hr_path) as im:  # the header only: read_rgb8 replicated a grayscale image
                    if im.mode == "L":
                        info["grayscale"].append(hr_path.name)
                lrs = {}
                for s in scales:
                    if generate[s]:
                        lrs[s] = make_lr(crop_to_scale(hr, s), s)
                        continue
                    lr, why = _read(_lr_path(lr_dir, hr_path, s))
                    if lr is None:
                        bad.append(why)
                    elif (lr.shape[0] * s, lr.shape[1] * s) != (hr.shape[0] // s * s, hr.shape[1] // s * s):
                        bad.append(f"{_lr_path(lr_dir, hr_path, s)}: LR {lr.shape[1]}x{lr.shape[0]} does not "
                                   f"match HR {hr_path.name} {hr.shape[1]}x{hr.shape[0]} at x{s}")
                    else:
                        lrs[s] = lr
                if bad:  # the h5 will not be kept: read on only to name every bad file
                    continue
                groups["HR"].create_dataset(str(i), data=hr)
                for s in scales:
                    groups[s].create_dataset(str(i), data=lrs[s])
            if bad:
                raise BadImages(bad, len(hrs) + len(lr_files))
            f.attrs["names"] = [p.stem for p in hrs]
            f.attrs["scales"] = list(scales)
            f.attrs["channels"] = "RGB"
            f.attrs["inputs_sha256"] = digest

    atomic_write(out, write)
    return info


def _path(text: str) -> Path:
    if not text:
        raise argparse.ArgumentTypeError("empty: give a path")
    return Path(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--div2k", type=_path, default=Path("datasets/DIV2K"), help="folder holding DIV2K_train_HR/")
    p.add_argument("--out", type=_path, default=Path("datasets/DIV2K_train.h5"))
    p.add_argument("--overwrite", action="store_true", help="replace an --out built from other files")
    p.add_argument("--toy", type=non_negative_int, default=0, metavar="N",
                   help="first make N training images (and a valid/ folder beside --div2k) from the photographs "
                        "shipped with scikit-image: a toy set for a quick run")
    args = p.parse_args(argv)
    try:
        if args.toy:
            div, val = make_toy_div2k(args.div2k.parent, count=args.toy, div2k=args.div2k)
            print(f"toy set: {args.toy} training images in {div / 'DIV2K_train_HR'}, a validation folder {val}")
        info = build_h5(args.div2k, args.out, overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, ImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BadImages as e:
        for line in e.lines:
            print(f"error: {line}", file=sys.stderr)
        print(f"error: {e}; nothing written: a training set without them would train on less without a word. "
              f"Replace or remove them, then run again", file=sys.stderr)
        return 1
    if info["kept"]:
        print(f"{args.out} is up to date ({info['images']} images): kept")
        return 0
    print(f"wrote {args.out}: {info['images']} images" + (f", generated LR x{info['generated']}" if info["generated"] else ""))
    if info["skipped"]:
        print(f"skipped {len(info['skipped'])} file(s) in DIV2K_train_HR that are not PNG: "
              f"{', '.join(info['skipped'][:5])}{' ...' if len(info['skipped']) > 5 else ''}", file=sys.stderr)
    if info["grayscale"]:
        print(f"converted {len(info['grayscale'])} grayscale image(s) to RGB (channel replicated): "
              f"{', '.join(info['grayscale'][:5])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
