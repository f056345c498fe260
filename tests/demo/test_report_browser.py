"""The report in a real headless browser (Debian's ``chromium``), driven without any Python
dependency: ``--dump-dom`` gives the DOM after the page's scripts ran, ``--enable-logging=stderr``
prints every console message as a ``:CONSOLE`` line, and the report's own error beacon counts
uncaught errors, failed loads and ``console.error`` calls into ``<html data-js-errors>``. Host
resolution is switched off, so anything the page tried to fetch would fail and be counted.

Skipped when chromium is missing, except on CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from infrabot.demo import DemoResult
from infrabot.demo._templates import source

from ._html import graph_xml, parse, svg_groups

ERROR_BEACON = source("beacon.js")

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--enable-logging=stderr", "--v=0",
         "--host-resolver-rules=MAP * ~NOTFOUND")
WIDTH, HEIGHT = 1280, 2400


@pytest.fixture(scope="session")
def chromium() -> str:
    found = os.environ.get("INFRABOT_CHROMIUM") or next(
        (path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: CI must install it "
                        "(apt-get install -y chromium chromium-driver)")
        pytest.skip("chromium is not installed (apt-get install chromium); "
                    "on CI (CI=true) this is a failure, not a skip")
    return found


def browse(chromium: str, page: Path, profile: Path, *args: str) -> tuple[str, list[str]]:
    """Load ``page`` headless; its stdout and the console messages chromium logged."""
    done = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def test_the_harness_sees_a_broken_page(chromium: str, tmp_path: Path) -> None:
    """Guards the test below: in this chromium, a throwing page is caught both ways."""
    page = tmp_path / "broken.html"
    page.write_text(f"<!DOCTYPE html><html><head><script>{ERROR_BEACON}</script></head><body>"
                    "<script>console.error('boom'); notDefined();</script></body></html>")
    dom, console = browse(chromium, page, tmp_path / "profile", "--dump-dom")
    assert 'data-js-errors="2"' in dom
    assert any("Uncaught ReferenceError" in line for line in console), console


def test_report_renders_with_no_console_errors(chromium: str, report_file: Path,
                                               demo_result: DemoResult, tmp_path: Path) -> None:
    dom, console = browse(chromium, report_file, tmp_path / "profile", "--dump-dom")
    assert console == []
    html = parse(dom).find_all("html")[0]
    assert html.attrs["data-js-errors"] == "0"
    assert html.attrs["data-report-ready"] == "yes"
    svg = graph_xml(dom)
    assert len(svg_groups(svg, "node")) == 10
    assert len(svg_groups(svg, "edge")) == 14
    tree = parse(dom)
    assert len(tree.by_id("audit-table").rows()) == len(demo_result.audit)
    assert len(tree.by_id("timeline").rows()) == len(demo_result.run.events)


def test_report_screenshot(chromium: str, report_file: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    _, console = browse(chromium, report_file, tmp_path / "profile", "--hide-scrollbars",
                        f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}")
    assert console == []
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (WIDTH, HEIGHT)
    assert len(png) > 50_000  # a drawn page, not a blank one
    keep = os.environ.get("INFRABOT_REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)


PROBE = """<script>
var edge = document.querySelector(
  '#delegation-graph .edge.handoff[data-source="agent:infrabot"][data-target="agent:argocd"]');
edge.dispatchEvent(new MouseEvent("mouseenter"));
var lit = document.querySelectorAll("#timeline tbody tr.hl");
document.documentElement.setAttribute("data-probe", lit.length + " " + edge.classList.contains(
  "hl") + " " + Array.prototype.map.call(lit, function (r) { return r.cells[2].textContent; }));
</script>"""


def test_hovering_an_edge_highlights_its_events(chromium: str, report_file: Path,
                                                tmp_path: Path) -> None:
    page = tmp_path / "probed.html"
    page.write_text(report_file.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                    encoding="utf-8")
    dom, console = browse(chromium, page, tmp_path / "profile", "--dump-dom")
    assert console == []
    html = parse(dom).find_all("html")[0]
    assert html.attrs["data-js-errors"] == "0"
    assert html.attrs["data-probe"] == "2 true exchanged,handed_off"


LAYOUT_PROBE = """<script>
window.addEventListener("load", function () {
  var out = [];
  var cards = Array.prototype.slice.call(document.querySelectorAll(".token"));
  cards.forEach(function (card) {
    var pre = card.querySelector("pre");
    if (pre.scrollWidth > pre.clientWidth + 1) out.push("cut:" + card.querySelector("h3")
      .textContent);
    ["ctx", "ancestors", "user_version", "registry_epoch", "revocation_url", "log_url"]
      .forEach(function (claim) {
        if (pre.textContent.indexOf('"' + claim + '"') < 0) out.push("missing:" + claim);
      });
  });
  var rows = {};
  cards.forEach(function (card) {
    (rows[card.offsetTop] = rows[card.offsetTop] || []).push(card.offsetHeight);
  });
  Object.keys(rows).forEach(function (top) {
    if (Math.max.apply(null, rows[top]) - Math.min.apply(null, rows[top]) > 1)
      out.push("uneven:" + top);
  });
  var labels = Array.prototype.map.call(
    document.querySelectorAll("#delegation-graph .edge .label rect"),
    function (r) { return r.getBBox(); });
  Array.prototype.forEach.call(document.querySelectorAll("#delegation-graph .edge path"),
    function (path) {
      var length = path.getTotalLength();
      for (var i = 0; i <= 200; i++) {
        var p = path.getPointAtLength(length * i / 200);
        labels.forEach(function (b) {
          if (p.x > b.x && p.x < b.x + b.width && p.y > b.y && p.y < b.y + b.height)
            out.push("label-on-edge");
        });
      }
    });
  document.documentElement.setAttribute("data-layout", out.length + ":" +
    Array.from(new Set(out)).join(","));
});
</script>"""


@pytest.mark.parametrize("width", [1400, 800])
def test_token_cards_show_every_claim_evenly_and_labels_stay_off_the_edges(
        chromium: str, report_file: Path, tmp_path: Path, width: int) -> None:
    """At a wide and a narrow window: every claim of every token card is shown and wrapped
    (nothing cut), cards in one row are one height, and no graph label covers an edge."""
    page = tmp_path / "layout.html"
    page.write_text(report_file.read_text(encoding="utf-8")
                    .replace("</body>", LAYOUT_PROBE + "</body>"), encoding="utf-8")
    dom, console = browse(chromium, page, tmp_path / "profile", "--dump-dom",
                          f"--window-size={width},2400")
    assert console == []
    html = parse(dom).find_all("html")[0]
    assert html.attrs["data-js-errors"] == "0"
    assert html.attrs["data-layout"] == "0:", html.attrs["data-layout"]
