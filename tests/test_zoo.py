"""Verified downloads against real HTTP servers on 127.0.0.1 (srkit.core.fetch), and the model zoo built from
the families' ``pretrained`` entries (srkit.weights.zoo): success, resume, leftovers of killed transfers that
never block, responses cut at the expected size, a trickling server stopped by the deadline, a full disk, file://
mirrors with odd folder names, a folder in the file's place, names never shadowed by the working directory."""
from __future__ import annotations

import errno
import hashlib
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import serve, synthetic_weights
from srkit.core import fetch as F
from srkit.core import registry
from srkit.weights import zoo

PAYLOAD = bytes(range(256)) * 4000  # 1 MB, stands in for a weight file


def _expect(data: bytes = PAYLOAD, size: bool = True) -> dict:
    e = {"sha256": hashlib.sha256(data).hexdigest(), "git_blob_sha1": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
    return {**e, "size": len(data)} if size else e


class Server:
    """What the loopback server does: the payload, a cut after N bytes (first request), a corrupt body, an
    announced length, extra bytes, a trickle (1 byte per ``trickle`` seconds), Range support."""

    def __init__(self) -> None:
        self.payload, self.cut_after, self.corrupt, self.extra, self.trickle = PAYLOAD, None, False, b"", 0.0
        self.announce: int | None = None
        self.requests: list[str | None] = []

    def handle(self, h) -> None:
        data = (bytes(b ^ 0xFF for b in self.payload[:10]) + self.payload[10:] if self.corrupt else self.payload)
        data += self.extra
        rng = h.headers.get("Range")
        self.requests.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if rng and start >= len(data):
            h.send_response(416)
            h.send_header("Content-Range", f"bytes */{len(data)}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_response(206 if rng else 200)
        body = data[start:]
        h.send_header("Content-Length", str(self.announce if self.announce is not None else len(body)))
        h.end_headers()
        if self.trickle:
            for b in body:
                h.wfile.write(bytes([b]))
                h.wfile.flush()
                time.sleep(self.trickle)
            return
        if self.cut_after is not None:
            h.wfile.write(body[: self.cut_after])
            h.wfile.flush()
            self.cut_after = None
            h.connection.shutdown(2)
            return
        h.wfile.write(body)


@pytest.fixture
def server():
    state = Server()
    with serve(state.handle) as url:
        state.url = url + "/carn_m.pth"
        yield state


def test_success_and_no_refetch(server, tmp_path):
    dest = tmp_path / "w.pth"
    assert F.fetch(server.url, dest, _expect(), progress=False) == dest and dest.read_bytes() == PAYLOAD
    n = len(server.requests)
    F.fetch(server.url, dest, _expect(), progress=False)
    assert len(server.requests) == n  # a verified file is not fetched again


def test_resume_after_a_cut_connection(server, tmp_path):
    server.cut_after = 500_000
    dest = tmp_path / "w.pth"
    with pytest.raises(F.DownloadError, match="500,000 bytes kept in w.pth.part; run again to resume"):
        F.fetch(server.url, dest, _expect(), progress=False)
    assert not dest.exists() and (tmp_path / "w.pth.part").stat().st_size == 500_000
    F.fetch(server.url, dest, _expect(), progress=False)
    assert server.requests[-1] == "bytes=500000-" and dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "w.pth.part").exists()


@pytest.mark.parametrize("sized", [True, False], ids=["size known", "hashes only"])
@pytest.mark.parametrize("leftover", ["complete", "longer", "garbage of full size"])
def test_a_leftover_part_never_blocks(server, tmp_path, leftover, sized):
    """A transfer killed before the rename leaves a full-size .part; a server that sent too much, a longer
    one. Each recovers in one call: verified as it is, or fetched again from the start."""
    part = tmp_path / "w.pth.part"
    part.write_bytes({"complete": PAYLOAD, "longer": PAYLOAD + b"x" * 1000,
                      "garbage of full size": bytes(len(PAYLOAD))}[leftover])
    dest = F.fetch(server.url, tmp_path / "w.pth", _expect(size=sized), progress=False)
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    if leftover == "complete":
        assert server.requests == []  # verified in place, nothing fetched


def test_a_response_longer_than_expected_is_cut_at_the_size(server, tmp_path):
    server.extra = b"y" * 5_000_000  # a server announcing and sending far more than the file
    with pytest.raises(F.DownloadError, match="announces 6,024,000 bytes, more than the 1,024,000 expected"):
        F.fetch(server.url, tmp_path / "w.pth", _expect(), progress=False)
    server.announce = len(PAYLOAD)  # ... or announcing the right length and sending more anyway
    F.fetch(server.url, tmp_path / "w.pth", _expect(), progress=False)  # stops reading at the size: verifies
    server.announce, server.extra = 10 ** 15, b""
    (tmp_path / "w.pth").unlink()
    with pytest.raises(F.DownloadError, match="announces 1,000,000,000,000,000 bytes"):
        F.fetch(server.url, tmp_path / "w.pth", _expect(), progress=False)
    assert not (tmp_path / "w.pth.part").exists() or (tmp_path / "w.pth.part").stat().st_size <= len(PAYLOAD)


def test_a_trickling_server_hits_the_deadline(server, tmp_path):
    server.trickle = 0.5
    t0 = time.monotonic()
    with pytest.raises(F.DownloadError, match="took longer than 2 s"):
        F.fetch(server.url, tmp_path / "w.pth", _expect(), timeout=5, progress=False, deadline=2)
    assert time.monotonic() - t0 < 10


def test_a_full_disk_says_so_and_leaves_no_empty_part(server, tmp_path, monkeypatch):
    real_open = open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    def fake_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return Full(f) if str(path).endswith(".part") and "b" in mode and ("w" in mode or "a" in mode) else f
    monkeypatch.setattr("builtins.open", fake_open)
    with pytest.raises(F.DownloadError, match="no space left on the device"):
        F.fetch(server.url, tmp_path / "w.pth", _expect(), progress=False)
    monkeypatch.undo()
    assert not (tmp_path / "w.pth.part").exists() and not (tmp_path / "w.pth").exists()


@pytest.mark.parametrize("folder", ["my mirror", "mirror #2", "a%20b"])
def test_file_mirrors_with_spaces_and_hashes(tmp_path, folder):
    src = tmp_path / folder / "carn_m.pth"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    raw = ["file://" + str(src)] if "%" not in folder else []  # a raw '%' is itself an escape: no raw form
    for url in [src.as_uri(), str(src), *raw]:  # percent-encoded, a plain path, raw
        dest = tmp_path / "out" / "w.pth"
        F.fetch(url, dest, _expect(), progress=False)
        assert dest.read_bytes() == PAYLOAD
        dest.unlink()
    assert urllib.parse.quote(folder) in src.as_uri()  # the percent-encoded form was the one fetched first


def test_a_folder_in_the_files_place_is_one_line(tmp_path, server):
    (tmp_path / "w.pth").mkdir()
    with pytest.raises(F.DownloadError, match="w.pth is a folder where the file w.pth should be"):
        F.fetch(server.url, tmp_path / "w.pth", _expect(), progress=False)


def test_server_absent_says_where_to_put_the_file(tmp_path, monkeypatch):
    synthetic_weights(monkeypatch, "carn_m", PAYLOAD, "http://127.0.0.1:9/carn_m.pth")  # port 9: nothing listens
    with pytest.raises(zoo.DownloadError, match=f"put it at {tmp_path / 'carn_m.pth'}"):
        zoo.download("carn_m", tmp_path, timeout=2, progress=False)
    assert not (tmp_path / "carn_m.pth").exists()


def test_manifest_hashes_match_the_released_file(carn_m_released):
    entry = zoo.manifest()["carn_m"]
    assert F.verify(carn_m_released, entry.expect()) is None
    for name, (fam, p) in registry.pretrained().items():
        assert p.url.startswith("https://raw.githubusercontent.com/") and (p.git_blob_sha1 or p.sha256), name
        assert p.license and fam.name in ("carn", "overnet")


def test_a_name_is_never_shadowed_by_the_working_directory(tmp_path, monkeypatch, carn_m_released):
    """`carn_m` is the released file, verified, even with a file or a folder of that name in the working
    directory; `./carn_m` is that path."""
    from srkit.core.checkpoint import CheckpointError
    from srkit.weights.load import load_model
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "carn_m.pth").write_bytes(carn_m_released.read_bytes())
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(weights))
    monkeypatch.chdir(tmp_path)
    for blocker in ("file", "folder"):
        target = tmp_path / "carn_m"
        target.mkdir() if blocker == "folder" else target.write_bytes(b"not weights")
        net, arch = load_model("carn_m")
        assert arch["model"] == "carn_m"
        with pytest.raises(CheckpointError, match="carn_m: (a folder|not a loadable)"):
            load_model("./carn_m")
        target.rmdir() if blocker == "folder" else target.unlink()
    assert zoo.is_name("carn_m") and not zoo.is_name("./carn_m") and not zoo.is_name("carn_m.pth")


def test_resolve_by_name_fills_and_checks_flags(tmp_path, carn_m_released, monkeypatch, capsys):
    from carn import sample
    from srkit.weights.load import load_model
    (tmp_path / "carn_m.pth").write_bytes(carn_m_released.read_bytes())
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(tmp_path))
    net, arch = load_model("carn_m")
    assert arch["model"] == "carn_m" and arch["group"] == 4 and arch["family"] == "carn"
    assert sample.main(["--ckpt_path", "carn_m", "--group", "1"]) == 2
    assert "--group 1 (checkpoint has 4)" in capsys.readouterr().err


def test_threads_share_nothing(tmp_path, server):
    """Two threads fetching two files from one server at once: both verified."""
    errors = []

    def one(i):
        try:
            F.fetch(server.url, tmp_path / f"w{i}.pth", _expect(), progress=False)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == [] and all(Path(tmp_path / f"w{i}.pth").read_bytes() == PAYLOAD for i in range(2))
