"""The HTML report's waterfall of the run's trace: hop, exchange, call and their durations,
from the spans the demo kept in its run log."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrabot.demo import DemoResult

from ._html import Element, parse


@pytest.fixture(scope="module")
def tree(report_file: Path) -> Element:
    return parse(report_file.read_text(encoding="utf-8"))


def test_the_report_draws_the_runs_trace(demo_result: DemoResult, tree: Element) -> None:
    trace_id = demo_result.run.trace_id
    assert trace_id and {s.trace_id for s in demo_result.trace} == {trace_id}
    section = tree.by_id("trace-section")
    assert trace_id in section.text()
    table = tree.by_id("trace-waterfall")
    assert table.header() == ["Span", "+ms", "ms", "Decision", "When"]
    rows = table.rows()
    assert len(rows) == len(demo_result.trace)
    names = [row[0].lstrip("· ") for row in rows]
    for hop in ("run/agents.infrabot [agent:infrabot]", "run/agents.argocd [agent:argocd]",
                "run/agents.cleanup [agent:cleanup]"):
        assert hop in names
    cleanup = names.index("run/agents.cleanup [agent:cleanup]")
    depth = rows[cleanup][0].count("·")
    after = [r for r in rows[cleanup + 1:] if r[0].lstrip("· ") == "exchange [agent:cleanup]"]
    assert after and all(r[0].count("·") > depth for r in after)  # under the hop
    assert all(r[3] == "allow" for r in after)
    assert len(table.find_all("div", cls="bar")) == len(rows)
