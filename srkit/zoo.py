"""The released weights: manifest, verified downloads, where weights live, and name -> path resolution.

    python checkpoint/download.py carn_m overnet_x4      # or: srkit-download all

Downloads go to ``<file>.part`` (resumed with an HTTP Range request after an interruption), are verified
(size, sha256 and/or git blob SHA-1 = sha1(b"blob <size>\\0" + content)), then renamed: a file under its
final name is always a verified one. A mismatch deletes the partial file and fails loudly.

Where weights go (:func:`weights_dir`): ``$SRKIT_WEIGHTS_DIR`` if set; else ``checkpoint/`` of the repository
checkout the package runs from; else the torch hub cache (``$TORCH_HOME/hub/checkpoints``). For machines
without internet, ``$SRKIT_MIRROR`` names a base URL or a folder holding the files under their release names
(weights: ``<mirror>/<file>``; benchmarks: ``<mirror>/<release path>``); they are verified the same way.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
MANIFEST_PATH = Path(__file__).with_name("manifest.json")  # package data: URL, hashes, family, flags, license
WEIGHTS_ENV, MIRROR_ENV = "SRKIT_WEIGHTS_DIR", "SRKIT_MIRROR"


class DownloadError(RuntimeError):
    """A download that failed or did not verify; the message says what to do instead."""


class NotWritableError(DownloadError):
    """The destination folder cannot be written (read-only, a file in the way, no permission)."""


def manifest() -> dict[str, dict[str, Any]]:
    return json.loads(MANIFEST_PATH.read_text())


def weights_dir() -> Path:
    """Where weights are looked for and downloaded to (see the module docstring)."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV])
    if (ROOT / "pyproject.toml").is_file() and (ROOT / "checkpoint").is_dir():  # a repository checkout
        return ROOT / "checkpoint"
    import torch.hub
    return Path(torch.hub.get_dir()) / "checkpoints"


def _hashes(path: Path) -> dict[str, str | int]:
    size = path.stat().st_size
    sha256, blob = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha256.update(chunk)
            blob.update(chunk)
    return {"size": size, "sha256": sha256.hexdigest(), "git_blob_sha1": blob.hexdigest()}


def verify(path: Path, expect: dict[str, Any]) -> str | None:
    """None if ``path`` matches every check ``expect`` states (size, sha256, git_blob_sha1), else what did not."""
    got = _hashes(path)
    for key in ("size", "sha256", "git_blob_sha1"):
        if key in expect and expect[key] != got[key]:
            return f"{key} is {got[key]}, expected {expect[key]}"
    return None


def mirrored(url: str, release_path: str) -> str:
    """``url``, or its copy under ``$SRKIT_MIRROR`` (a base URL or a folder) at ``release_path``."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + release_path


def _writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".srkit-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise NotWritableError(f"cannot write to {folder} ({e.strerror or e})") from None


def fetch(url: str, dest: Path, expect: dict[str, Any], timeout: float = 30, progress: bool = True) -> Path:
    """Make ``dest`` a verified copy of ``url`` (http(s), file:// or a local path): no-op if it already is one,
    resumes a ``.part`` left by an interrupted download, never leaves an unverified file under ``dest``."""
    if dest.exists():
        bad = verify(dest, expect)
        if bad is None:
            return dest
        raise DownloadError(f"{dest} exists but does not verify ({bad}); delete it and download again")
    _writable(dest.parent)
    part = dest.with_name(dest.name + ".part")
    scheme = urllib.parse.urlparse(url).scheme
    try:
        if scheme in ("http", "https"):
            _http_get(url, part, timeout, progress, dest.name)
        else:
            src = Path(urllib.parse.urlparse(url).path if scheme == "file" else url)
            if not src.is_file():
                raise FileNotFoundError(f"no file {src}")
            shutil.copyfile(src, part)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        kept = f" ({part.stat().st_size} bytes kept in {part.name}; run again to resume)" if part.exists() else ""
        reason = getattr(e, "reason", None) or (e.strerror if isinstance(e, OSError) and e.strerror else e)
        if isinstance(e, OSError) and e.errno == 28:
            reason = "no space left on the device"
        raise DownloadError(f"could not fetch {url}: {reason}{kept}") from None
    bad = verify(part, expect)
    if bad is not None:
        part.unlink()
        raise DownloadError(f"{url}: the fetched file does not verify ({bad}); deleted it")
    os.replace(part, dest)
    return dest


def _http_get(url: str, part: Path, timeout: float, progress: bool, label: str) -> None:
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        if have and r.status != 206:  # server ignored the range: start over
            have = 0
        length = r.headers.get("Content-Length")
        total = int(length) + have if length else None
        with open(part, "ab" if have else "wb") as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                             desc=label, disable=not progress) as bar:
            for chunk in iter(lambda: r.read(1 << 16), b""):
                f.write(chunk)
                bar.update(len(chunk))
        if total is not None and part.stat().st_size < total:
            raise ConnectionError(f"connection closed after {part.stat().st_size} of {total} bytes")


def download(name: str, dest_dir: Path | None = None, entry: dict[str, Any] | None = None, timeout: float = 30,
             progress: bool = True) -> Path:
    """Fetch the manifest's ``name`` into ``dest_dir`` (default :func:`weights_dir`; no-op if a verified copy
    is there); says which license applies before fetching."""
    dest_dir = weights_dir() if dest_dir is None else Path(dest_dir)
    entry = entry or manifest().get(name)
    if entry is None:
        raise DownloadError(f"unknown checkpoint {name!r}; known: {', '.join(manifest())}")
    final = dest_dir / entry["file"]
    if not final.exists() and progress:
        print(f"{name}: fetching {entry['file']} into {dest_dir} (license: {entry.get('license', 'not stated')})",
              file=sys.stderr)
    try:
        return fetch(mirrored(entry["url"], entry["file"]), final, entry, timeout, progress)
    except NotWritableError as e:
        raise NotWritableError(f"{e}: set {WEIGHTS_ENV} to a writable folder, or pass --dir") from None
    except DownloadError as e:
        raise DownloadError(f"{e}.\nWithout network access, download {entry['url']} by hand and put it at "
                            f"{final} (or set {MIRROR_ENV} to a folder or URL that has it)") from None


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
    p.add_argument("--dir", type=Path, default=None, help=f"default: ${WEIGHTS_ENV}, checkpoint/ in a checkout, "
                                                          f"or the torch hub cache")
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
