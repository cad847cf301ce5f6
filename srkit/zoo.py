"""The released weights: manifest, integrity checks, downloads, and name -> path resolution.

    python checkpoint/download.py carn_m overnet_x4      # or: srkit-download all

Downloads go to ``<file>.part`` (resumed with an HTTP Range request after an interruption), are verified
(size, sha256 and/or git blob SHA-1 = sha1(b"blob <size>\\0" + content)), then renamed: a file under its
final name is always a verified one. A hash mismatch deletes the partial file and fails loudly.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
CKPT_DIR = ROOT / "checkpoint"
MANIFEST_PATH = Path(__file__).with_name("manifest.json")  # package data: URL, hashes, family, flags


class DownloadError(RuntimeError):
    """A download that failed or did not verify; the message says what to do instead."""


def manifest() -> dict[str, dict[str, Any]]:
    return json.loads(MANIFEST_PATH.read_text())


def _hashes(path: Path) -> dict[str, str | int]:
    size = path.stat().st_size
    sha256, blob = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha256.update(chunk)
            blob.update(chunk)
    return {"size": size, "sha256": sha256.hexdigest(), "git_blob_sha1": blob.hexdigest()}


def verify(path: Path, entry: dict[str, Any]) -> str | None:
    """None if ``path`` matches every check the entry states, else what did not match."""
    got = _hashes(path)
    for key in ("size", "sha256", "git_blob_sha1"):
        if key in entry and entry[key] != got[key]:
            return f"{key} is {got[key]}, expected {entry[key]}"
    return None


def download(name: str, dest_dir: Path | None = None, entry: dict[str, Any] | None = None, timeout: float = 30,
             progress: bool = True) -> Path:
    """Fetch the manifest's ``name`` into ``dest_dir`` (default CKPT_DIR; no-op if a verified copy is there)."""
    dest_dir = CKPT_DIR if dest_dir is None else Path(dest_dir)
    entry = entry or manifest().get(name)
    if entry is None:
        raise DownloadError(f"unknown checkpoint {name!r}; known: {', '.join(manifest())}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    final, part = dest_dir / entry["file"], dest_dir / (entry["file"] + ".part")
    if final.exists():
        bad = verify(final, entry)
        if bad is None:
            return final
        raise DownloadError(f"{final} exists but does not verify ({bad}); delete it and download again")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(entry["url"], headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            if have and r.status != 206:  # server ignored the range: start over
                have = 0
            length = r.headers.get("Content-Length")
            total = int(length) + have if length else None
            with open(part, "ab" if have else "wb") as f, tqdm(total=total, initial=have, unit="B",
                                                                 unit_scale=True, desc=entry["file"],
                                                                 disable=not progress) as bar:
                for chunk in iter(lambda: r.read(1 << 16), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
            if total is not None and part.stat().st_size < total:
                raise ConnectionError(f"connection closed after {part.stat().st_size} of {total} bytes")
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        kept = f" ({part.stat().st_size} bytes kept in {part.name}; run again to resume)" if part.exists() else ""
        raise DownloadError(f"could not download {entry['url']}: {getattr(e, 'reason', e)}{kept}.\n"
                            f"Without network access, download it by hand and put it at {final}") from None
    bad = verify(part, entry)
    if bad is not None:
        part.unlink()
        raise DownloadError(f"{entry['url']}: downloaded file does not verify ({bad}); deleted it")
    os.replace(part, final)
    return final


def resolve(name_or_path: str, dest_dir: Path | None = None) -> tuple[str, dict[str, Any] | None]:
    """A checkpoint path for a path or a manifest name (downloaded if missing), and the manifest entry."""
    if Path(name_or_path).exists():
        return name_or_path, None
    entries = manifest()
    if name_or_path in entries:
        return str(download(name_or_path, dest_dir)), entries[name_or_path]
    return name_or_path, None  # let the loader report the missing file


def main(argv: list[str] | None = None) -> int:
    names = list(manifest())
    p = argparse.ArgumentParser(description="Download the authors' released weights, verified against the manifest.")
    p.add_argument("names", nargs="+", help=f"'all' or any of: {', '.join(names)}")
    p.add_argument("--dir", type=Path, default=None, help=f"default: {CKPT_DIR}")
    a = p.parse_args(argv)
    wanted = names if "all" in a.names else a.names
    failed = 0
    for n in wanted:
        try:
            print(f"{n}: {download(n, a.dir)}")
        except DownloadError as e:
            print(f"error: {n}: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
