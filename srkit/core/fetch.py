"""Verified downloads: a file under its final name is always one that matched its expected size and hashes.

``fetch(url, dest, expect)`` writes to ``<dest>.part``, resuming an interrupted transfer with an HTTP Range
request, verifies (size, sha256 and / or git blob SHA-1 = sha1(b"blob <size>\\0" + content)), then renames.
What can go wrong is one line each, and nothing is left that blocks the next run:

- a ``.part`` as long as the file or longer (a transfer killed before the rename, or a server that sent too
  much) is verified as it is, and started over if it does not verify: it never blocks;
- a transfer never writes more than the expected size (or ``MAX_UNSIZED`` bytes where no size is known), and
  each file has an overall deadline besides the per-read timeout;
- a full disk says so, and leaves no empty ``.part``;
- a folder where the file should be is named.

``$SRKIT_MIRROR`` serves files from a base URL or a folder instead (``mirrored``); ``file://`` URLs are
percent-decoded, so folders with spaces or ``#`` work.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tqdm import tqdm

MIRROR_ENV = "SRKIT_MIRROR"
MAX_UNSIZED = 512 * 2**20  # bytes a transfer may write when no size is expected
DEADLINE_S = 1800.0        # a whole file, whatever the server's pace
CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A download that failed or did not verify; the message says what to do instead."""


class NotWritableError(DownloadError):
    """The destination folder cannot be written (read-only, a file in the way, no permission)."""


def hashes(path: Path) -> dict[str, str | int]:
    size = path.stat().st_size
    sha256, blob = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha256.update(chunk)
            blob.update(chunk)
    return {"size": size, "sha256": sha256.hexdigest(), "git_blob_sha1": blob.hexdigest()}


def verify(path: Path, expect: dict[str, Any]) -> str | None:
    """None if ``path`` matches every check ``expect`` states (size, sha256, git_blob_sha1), else what did not."""
    got = hashes(path)
    for key in ("size", "sha256", "git_blob_sha1"):
        if expect.get(key) is not None and expect[key] != got[key]:
            return f"{key} is {got[key]}, expected {expect[key]}"
    return None


def mirrored(url: str, release_path: str) -> str:
    """``url``, or its copy under ``$SRKIT_MIRROR`` (a base URL or a folder) at ``release_path``."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + release_path


def local_source(url: str) -> Path | None:
    """The local file a ``file://`` URL or a plain path names (percent-decoded), or None for http(s)."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme in ("http", "https"):
        return None
    if url.startswith("file://"):
        # not urlparse: a literal '#' or '?' in a folder name is part of the path, not a fragment or query
        rest = url[len("file://"):]
        host, _, path = rest.partition("/")
        if host not in ("", "localhost"):
            raise DownloadError(f"{url}: file:// URLs name this machine's files only")
        return Path(urllib.request.url2pathname("/" + path))
    return Path(url)


def writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".srkit-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise NotWritableError(f"cannot write to {folder} ({e.strerror or e})") from None


def fetch(url: str, dest: Path, expect: dict[str, Any], timeout: float = 30, progress: bool = True,
          deadline: float = DEADLINE_S) -> Path:
    """Make ``dest`` a verified copy of ``url`` (http(s), file:// or a local path); no-op if it already is."""
    dest = Path(dest)
    if dest.is_dir():
        raise DownloadError(f"{dest} is a folder where the file {dest.name} should be: move it away")
    if dest.exists():
        bad = verify(dest, expect)
        if bad is None:
            return dest
        raise DownloadError(f"{dest} exists but does not verify ({bad}); delete it and download again")
    writable(dest.parent)
    part = dest.with_name(dest.name + ".part")
    if part.is_dir():
        raise DownloadError(f"{part} is a folder where a partial download would go: move it away")
    limit = expect.get("size") or MAX_UNSIZED
    try:
        if part.exists() and part.stat().st_size >= limit:
            _settle_long_part(part, expect)  # complete (killed before the rename) or too long: never blocks
        if not part.exists() or verify(part, expect) is not None:
            src = local_source(url)
            if src is None:
                _http_get(url, part, limit, timeout, deadline, progress, dest.name)
            else:
                _copy_local(src, part, limit)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise DownloadError(_failure(url, part, e)) from None
    bad = verify(part, expect)
    if bad is not None:
        part.unlink()
        raise DownloadError(f"{url}: the fetched file does not verify ({bad}); deleted it")
    os.replace(part, dest)
    return dest


def _settle_long_part(part: Path, expect: dict[str, Any]) -> None:
    """A ``.part`` at least as long as the file: keep it if it is the file, else start over."""
    if expect.get("size") is not None and part.stat().st_size > expect["size"]:
        part.unlink()
    elif verify(part, expect) is not None:
        part.unlink()


def _failure(url: str, part: Path, e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        reason = f"no space left on the device ({shutil.disk_usage(part.parent).free:,} bytes free)"
    else:
        reason = getattr(e, "reason", None) or (e.strerror if isinstance(e, OSError) and e.strerror else e)
    if part.exists() and part.stat().st_size == 0:
        part.unlink()
    kept = f" ({part.stat().st_size:,} bytes kept in {part.name}; run again to resume)" if part.exists() else ""
    return f"could not fetch {url}: {reason}{kept}"


def _copy_local(src: Path, part: Path, limit: int) -> None:
    if src.is_dir():
        raise FileNotFoundError(f"{src} is a folder, not a file")
    if not src.is_file():
        raise FileNotFoundError(f"no file {src}")
    if src.stat().st_size > limit:
        raise DownloadError(f"{src} is {src.stat().st_size:,} bytes, more than the {limit:,} expected")
    shutil.copyfile(src, part)


def _http_get(url: str, part: Path, limit: int, timeout: float, deadline: float, progress: bool,
              label: str) -> None:
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    start = time.monotonic()
    try:
        r = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:
            raise
        # the server has nothing past our bytes: the part is the whole file or not the file at all
        part.unlink()
        r = urllib.request.urlopen(urllib.request.Request(url), timeout=timeout)
        have = 0
    with r:
        if have and r.status != 206:  # the server ignored the range: start over
            have = 0
        length = r.headers.get("Content-Length")
        total = int(length) + have if length and length.isdigit() else None
        if total is not None and total > limit:
            raise DownloadError(f"{url}: the server announces {total:,} bytes, more than the {limit:,} expected")
        with open(part, "ab" if have else "wb") as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                             desc=label, disable=not progress) as bar:
            written = have
            while True:
                if time.monotonic() - start > deadline:
                    raise TimeoutError(f"the transfer took longer than {deadline:g} s")
                chunk = r.read1(min(CHUNK, limit - written + 1))  # what has arrived, not a full buffer
                if not chunk:
                    break
                if written + len(chunk) > limit:
                    f.write(chunk[:limit - written])
                    raise DownloadError(f"{url}: the server sent more than the {limit:,} bytes expected")
                f.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
        if total is not None and part.stat().st_size < total:
            raise ConnectionError(f"connection closed after {part.stat().st_size:,} of {total:,} bytes")
