"""Checkpoint downloads against a real HTTP server on 127.0.0.1 serving synthetic bytes with their real hashes:
success, resume after a failure, corrupt payload rejected, server absent; never a partial file under the final
name. The manifest's hashes are checked against the released file where ../shared has it."""
from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from srkit import zoo


class _Handler(http.server.BaseHTTPRequestHandler):
    payload = b""
    cut_after: int | None = None   # drop the connection after this many bytes (first request only)
    corrupt = False
    requests: list = []

    def do_GET(self):  # noqa: N802
        data = bytes(b ^ 0xFF for b in self.payload[:10]) + self.payload[10:] if self.corrupt else self.payload
        start = 0
        rng = self.headers.get("Range")
        type(self).requests.append(rng)
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.cut_after is not None:
            self.wfile.write(body[: self.cut_after])
            self.wfile.flush()
            type(self).cut_after = None
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *a):
        pass


PAYLOAD = bytes(range(256)) * 4000  # 1 MB, stands in for a weight file


@pytest.fixture
def server():
    _Handler.payload = PAYLOAD
    _Handler.cut_after, _Handler.corrupt, _Handler.requests = None, False, []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _entry(server) -> dict:
    e = dict(zoo.manifest()["carn_m"])
    e.update(url=f"http://127.0.0.1:{server.server_address[1]}/carn_m.pth", size=len(PAYLOAD),
             sha256=hashlib.sha256(PAYLOAD).hexdigest(),
             git_blob_sha1=hashlib.sha1(b"blob %d\0" % len(PAYLOAD) + PAYLOAD).hexdigest())
    return e


def test_manifest_hashes_match_the_released_file(carn_m_released):
    e = zoo.manifest()["carn_m"]
    assert zoo.verify(carn_m_released, e) is None
    data = carn_m_released.read_bytes()
    assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == e["git_blob_sha1"]
    for name, entry in zoo.manifest().items():
        assert entry["url"].startswith("https://raw.githubusercontent.com/") and entry["git_blob_sha1"]
        assert entry["license"] and entry["family"] in ("carn", "overnet")


def test_download_success_and_no_refetch(server, tmp_path):
    path = zoo.download("carn_m", tmp_path, entry=_entry(server), progress=False)
    assert path == tmp_path / "carn_m.pth" and zoo.verify(path, _entry(server)) is None
    n = len(_Handler.requests)
    assert zoo.download("carn_m", tmp_path, entry=_entry(server), progress=False) == path
    assert len(_Handler.requests) == n  # a verified file is not fetched again


def test_resume_after_failure(server, tmp_path):
    _Handler.cut_after = 500_000
    with pytest.raises(zoo.DownloadError, match="run again to resume"):
        zoo.download("carn_m", tmp_path, entry=_entry(server), progress=False)
    assert not (tmp_path / "carn_m.pth").exists()
    assert (tmp_path / "carn_m.pth.part").stat().st_size == 500_000
    path = zoo.download("carn_m", tmp_path, entry=_entry(server), progress=False)
    assert _Handler.requests[-1] == "bytes=500000-"
    assert zoo.verify(path, _entry(server)) is None and not (tmp_path / "carn_m.pth.part").exists()


def test_corrupt_payload_is_rejected_and_deleted(server, tmp_path):
    _Handler.corrupt = True
    with pytest.raises(zoo.DownloadError, match="does not verify .*sha256"):
        zoo.download("carn_m", tmp_path, entry=_entry(server), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_server_absent_says_where_to_put_the_file(tmp_path):
    e = dict(zoo.manifest()["carn_m"], url="http://127.0.0.1:9/carn_m.pth")  # port 9 (discard): nothing listens
    with pytest.raises(zoo.DownloadError, match=f"put it at {tmp_path / 'carn_m.pth'}"):
        zoo.download("carn_m", tmp_path, entry=e, timeout=2, progress=False)
    assert not (tmp_path / "carn_m.pth").exists()


def test_resolve_by_name_fills_and_checks_flags(tmp_path, carn_m_released, monkeypatch, capsys):
    import shutil

    from carn import sample
    from srkit.models import load_model
    shutil.copy(carn_m_released, tmp_path / "carn_m.pth")
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(tmp_path))
    net, arch = load_model("carn_m")
    assert arch["model"] == "carn_m" and arch["group"] == 4 and arch["family"] == "carn"
    assert sample.main(["--ckpt_path", "carn_m", "--group", "1"]) == 2
    assert "--group 1 (checkpoint has 4)" in capsys.readouterr().err
