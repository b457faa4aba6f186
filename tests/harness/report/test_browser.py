"""report.html in a real browser: headless Chromium opens it from file:// with name resolution
switched off, and the test reads the DOM Chromium built (diagram, tables, charts present; hostile
strings stayed text) and checks that a screenshot is not blank.

Needs Debian's `chromium` (apt-get install chromium); set ALEXBENCH_CHROMIUM to use another binary.
ALEXBENCH_REGEN_SCREENSHOT=1 rewrites docs/img/report-alexnet.png (the README's picture).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from alexbench.harness.cli.main import main
from alexbench.harness.results.document import read_results, spec_summary
from alexbench.spec import fmt_shape, load_spec, shipped_spec_names

ROOT = Path(__file__).parents[3]
GOLDEN = Path(__file__).parent / "golden"
RESULTS = sorted(str(p) for p in GOLDEN.glob("results-*.json"))
DOCS_SCREENSHOT = ROOT / "docs" / "img" / "report-alexnet.png"


# ---- the browser ----------------------------------------------------------------------------------

def chromium() -> str:
    found = os.environ.get("ALEXBENCH_CHROMIUM") or next(
        (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)),
        None)
    if not found:
        pytest.fail("the report tests need headless Chromium and found none on PATH: apt-get install chromium "
                    "(Debian/Ubuntu; fonts-dejavu-core for text), or set ALEXBENCH_CHROMIUM to a Chrome binary",
                    pytrace=False)
    return found


def browse(page: Path, profile: Path, *action: str) -> str:
    """Run Chromium headless on ``page`` with no network (every host name fails to resolve)."""
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--no-first-run",
            "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
            *action, page.resolve().as_uri()]
    run = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, f"chromium exited {run.returncode}: {run.stderr[-2000:]}"
    return run.stdout


class Node:
    def __init__(self, tag: str, attrs: dict[str, str]):
        self.tag, self.attrs, self.children, self.text = tag, attrs, [], []

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        found = []
        for child in self.children:
            if (tag is None or child.tag == tag) and (cls is None or cls in child.classes()):
                found.append(child)
            found += child.all(tag, cls)
        return found

    def one(self, tag: str | None = None, cls: str | None = None) -> Node:
        found = self.all(tag, cls)
        assert len(found) == 1, f"expected one <{tag} class={cls}>, found {len(found)}"
        return found[0]

    def content(self) -> str:
        return "".join(self.text) + "".join(c.content() for c in self.children)


class DomParser(HTMLParser):
    VOID = {"meta", "br", "img", "input", "link", "hr", "area", "base", "col", "embed", "source", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].text.append(data)


def dom(page: Path, profile: Path) -> Node:
    parser = DomParser()
    parser.feed(browse(page, profile, "--dump-dom"))
    return parser.root


def screenshot(page: Path, profile: Path, png: Path, size: str = "1280,2000") -> Image.Image:
    browse(page, profile, f"--screenshot={png}", f"--window-size={size}")
    return Image.open(png).convert("RGB")


def assert_not_blank(image: Image.Image) -> None:
    gray = image.convert("L")
    assert ImageStat.Stat(gray).stddev[0] > 20, "the screenshot is (nearly) one colour"
    histogram = gray.histogram()
    assert max(histogram) / sum(histogram) < 0.8, "over 80% of the screenshot is one shade"


# ---- the checks -----------------------------------------------------------------------------------

def check_architecture(root: Node, spec) -> None:
    assert not root.all("script") and not root.all("img") and not root.all("iframe")
    diagram = root.one("svg", "diagram")
    assert len(diagram.all("g", "node")) == len(spec.layers) + 1  # input + every layer, drawn by Graphviz
    text = diagram.content()
    for layer in spec.layers:
        assert layer.name in text and f"output: {fmt_shape(layer.output_shape)}" in text
    table = root.one("table", "layers")
    assert len(table.one("tbody").all("tr")) == len(spec.layers) + 1
    assert f"{spec.param_count:,}" in table.one("tfoot").content()


@pytest.mark.parametrize("name", shipped_spec_names())
def test_shipped_spec_in_chromium(tmp_path, name):
    spec = load_spec(name)
    assert main(["report", name, "-o", str(tmp_path / "out"), "-q"]) == 0
    page = tmp_path / "out" / "report.html"
    check_architecture(dom(page, tmp_path / "profile"), spec)
    image = screenshot(page, tmp_path / "profile", tmp_path / "shot.png")
    assert image.size == (1280, 2000)
    assert_not_blank(image)


def test_results_report_in_chromium(tmp_path):
    spec = load_spec("alexnet")
    args = ["--compare-with", "alexnet-owt", *(a for p in RESULTS for a in ("--results", p))]
    assert main(["report", "alexnet", *args, "-o", str(tmp_path / "out"), "-q"]) == 0
    page = tmp_path / "out" / "report.html"
    root = dom(page, tmp_path / "profile")
    check_architecture(root, spec)
    assert "60,965,224" in root.one("div", "cards").content()
    parity = root.one("table", "parity")
    assert [th.content() for th in parity.one("thead").all("th")] == [
        "backend", "AMD EPYC 7B13 (16 CPUs)", "NVIDIA H200"]
    assert len(parity.one("tbody").all("tr")) == 5
    assert "first divergent layer: norm1" in parity.content()
    errors = root.all("svg", "chart-errors")
    assert len(errors) == 2 and len(errors[0].all("polyline")) == 4  # one line per compared backend
    throughput = root.all("svg", "chart-throughput")
    assert len(throughput) == 3 and "images / s" in throughput[0].content()
    assert len(root.all("table", "pairwise")) == 2
    assert "torch" in root.one("table", "environment").content()
    assert root.one("table", "variant-diff")
    assert_not_blank(screenshot(page, tmp_path / "profile", tmp_path / "shot.png", "1280,4000"))


HOSTILE = ("<script>document.body.setAttribute('data-pwned','1')</script>"
           "<img src=x onerror=\"document.body.setAttribute('data-pwned','2')\"> & `code` | cell")


def test_hostile_strings_stay_text(tmp_path):
    spec_text = (ROOT / "tests" / "specs" / "ops-pool-norm.yaml").read_text()
    spec_text = spec_text.replace(
        "description: ceil/floor pooling, avg/adaptive pools, LRN 5, BatchNorm with small variances",
        "description: " + json.dumps(HOSTILE) + "\nprovenance:\n  source: " + json.dumps(HOSTILE)
        + "\n  url: \"javascript:document.body.setAttribute('data-pwned','3')\"\n  notes: " + json.dumps(HOSTILE))
    spec_path = tmp_path / "hostile.yaml"
    spec_path.write_text(spec_text)
    spec = load_spec(spec_path)
    assert spec.description == HOSTILE
    doc = read_results(GOLDEN / "results-compare-gpu.json")
    doc["spec"] = spec_summary(spec)
    doc["environment"]["cpu"] = doc["environment"]["gpus"][0] = HOSTILE
    doc["verdict"]["summary"] = HOSTILE
    for backend in doc["backends"]:
        backend["layers"] = [dict(row, name=f"{row['name']}{HOSTILE}") for row in backend["layers"]]
        backend["error"] = HOSTILE if backend["error"] else None
        backend["environment"] = {"device": HOSTILE}
    doc["backends"][1]["name"] = HOSTILE
    results = tmp_path / "<img src=x onerror=alert(1)>.json"  # the file name is shown too
    results.write_text(json.dumps(doc))
    out = tmp_path / "out"
    assert main(["report", str(spec_path), "--results", str(results), "-o", str(out), "-q"]) == 0

    root = dom(out / "report.html", tmp_path / "profile")
    body = root.one("body")
    assert "data-pwned" not in body.attrs
    assert not root.all("script") and not root.all("img") and not root.all("iframe")
    for node in root.all():
        assert not any(k.startswith("on") for k in node.attrs), f"<{node.tag}> got an event handler"
        assert not node.attrs.get("href", "").startswith("javascript:")
    text = body.content()
    assert text.count(HOSTILE) >= 6  # shown, as text, where it was written
    markdown = (out / "report.md").read_text()
    assert "<script" not in markdown and "<img" not in markdown and "](javascript:" not in markdown
    for svg in out.glob("chart-*.svg"):
        assert "<script" not in svg.read_text()


def test_docs_screenshot(tmp_path):
    """The README's picture of the alexnet report (regenerate: ALEXBENCH_REGEN_SCREENSHOT=1)."""
    if os.environ.get("ALEXBENCH_REGEN_SCREENSHOT") == "1":
        assert main(["report", "alexnet", "-o", str(tmp_path / "out"), "-q"]) == 0
        image = screenshot(tmp_path / "out" / "report.html", tmp_path / "profile", tmp_path / "shot.png",
                           "1280,1500")
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(DOCS_SCREENSHOT, optimize=True)
    assert DOCS_SCREENSHOT.is_file(), f"{DOCS_SCREENSHOT} is missing; ALEXBENCH_REGEN_SCREENSHOT=1 pytest {__file__}"
    assert DOCS_SCREENSHOT.stat().st_size < 400_000
    assert_not_blank(Image.open(DOCS_SCREENSHOT).convert("RGB"))
