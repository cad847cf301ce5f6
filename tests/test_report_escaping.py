"""The report of a results folder someone sent you runs nothing of theirs: every field a results folder, a
checkpoint's metadata or a file name puts on the page is escaped, and a Content-Security-Policy allows only the
page's own style and script (by hash)."""
from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import subprocess
import sys
from pathlib import Path

from carn import sample
from conftest import run_dir
from test_one_bad_file import photo

BIN = Path(sys.executable).parent
IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "</script><script>alert(1)</script>"
TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "table", "tr", "th", "td", "code", "label",
        "select", "option", "div", "figure", "figcaption", "img", "span", "a", "script"}


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, text):
        if self._in == "script":
            self.scripts.append(text)
        elif self._in == "style":
            self.styles.append(text)


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_a_hostile_results_folder_puts_no_markup_on_the_page(tmp_path, random_carn_m):
    src = tmp_path / "Set"
    src.mkdir()
    photo().save(src / f"{IMG}.png")  # a real file name
    photo(y=200).save(src / "plain.png")
    assert sample.main(["--ckpt_path", str(random_carn_m), "--test_data_dir", str(src), "--scale", "2",
                        "--sample_dir", str(tmp_path / "o"), "--cpu"]) == 0
    folder = run_dir(tmp_path / "o")
    path = folder / "summary.json"
    summary = json.loads(path.read_text())
    for k in ("name", "path", "family", "sha256", "released"):
        summary["checkpoint"][k] = SCRIPT
    summary["checkpoint"]["arch"] = {SCRIPT: IMG}
    for k in ("command", "date", "device", "torch", "version", "commit"):
        summary["runs"][0][k] = SCRIPT + IMG
    summary["results"][0]["images"] = SCRIPT
    summary["results"].append({**summary["results"][0], "dataset": f"{IMG}{SCRIPT}"})
    path.write_text(json.dumps(summary))
    r = subprocess.run([str(BIN / "srkit-report"), str(folder)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    text = (folder / "report.html").read_text()
    assert IMG not in text and "<script>alert" not in text
    page = Page()
    page.feed(text)
    assert {t for t, _ in page.tags} <= TAGS
    assert not [(t, a) for t, a in page.tags if any(k.startswith("on") for k in a)]
    assert all(a.get("src", "data:").startswith("data:") for t, a in page.tags if t == "img")
    assert [t for t, _ in page.tags].count("script") == 1 and not [a for t, a in page.tags if t == "script" and a]
    csp = [a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert len(csp) == 1 and "unsafe-inline" not in csp[0]
    rules = dict(part.strip().split(" ", 1) for part in csp[0].split(";"))
    assert rules["default-src"] == "'none'"
    assert rules["script-src"] == _sha(page.scripts[0]) and rules["style-src"] == _sha(page.styles[0])
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in text  # the name is shown, as text
