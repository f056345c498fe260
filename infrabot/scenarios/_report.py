"""Scenario results for people (Rich), for programs (JSON) and for CI systems (JUnit XML).

Pure functions: they build renderables, dicts and XML text, and print nothing.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from infrabot.scenarios._checks import Check
from infrabot.scenarios._runner import ScenarioResult
from orchestrator._words import plural

SUITE = "infrabot check"


def summary(results: Sequence[ScenarioResult], seconds: float) -> dict[str, Any]:
    checks = [c for r in results for c in r.checks]
    return {"scenarios": len(results), "passed": sum(r.passed for r in results),
            "failed": sum(not r.passed and r.error is None for r in results),
            "errors": sum(r.error is not None for r in results),
            "expectations": len(checks), "mismatched": sum(not c.passed for c in checks),
            "seconds": round(seconds, 3)}


def summary_line(results: Sequence[ScenarioResult], seconds: float) -> str:
    s = summary(results, seconds)
    errors = f", {s['errors']} could not run" if s["errors"] else ""
    return (f"{plural(s['scenarios'], 'scenario')}: {s['passed']} passed, {s['failed']} failed"
            f"{errors} · {plural(s['expectations'], 'expectation')}, {s['mismatched']} mismatched"
            f" · {seconds:.1f} s")


def render_results(results: Sequence[ScenarioResult], seconds: float) -> RenderableType:
    """Every scenario with every expectation (✓ / ✗), a diff under each mismatch, a summary."""
    parts: list[RenderableType] = [render_result(r) for r in results]
    ok = all(r.passed for r in results)
    parts.append(Text(summary_line(results, seconds), style="bold green" if ok else "bold red"))
    return Group(*parts)


def render_result(result: ScenarioResult) -> RenderableType:
    head = Text()
    head.append("✓ " if result.passed else "✗ ", style="green" if result.passed else "red")
    head.append(result.name, style="bold")
    head.append(f"  {result.seconds:.2f} s", style="dim")
    if result.run_id:
        head.append(f"  {result.run_id}", style="dim")
    table = Table.grid(padding=(0, 1))
    table.add_column(width=2)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for check in result.checks:
        table.add_row(*_check_row(check))
    for note in result.notes:
        table.add_row("", Text("note", style="dim"), Text(note, style="dim"))
    if result.error:
        table.add_row(Text("!", style="red"), Text("error", style="red"), result.error)
    return Group(head, table)


def _check_row(check: Check) -> tuple[RenderableType, RenderableType, RenderableType]:
    if check.passed:
        return Text("✓", style="green"), check.name, Text(_one_line(check.actual), style="dim")
    detail = Text()
    if check.diff:
        for line in check.diff:
            style = ("red" if line.startswith("-") else "green" if line.startswith("+")
                     else "dim" if line.startswith("@@") else "")
            detail.append(line + "\n", style=style)
        detail.rstrip()
    else:
        detail.append("expected ", style="dim")
        detail.append(check.expected, style="red")
        detail.append("\nactual   ", style="dim")
        detail.append(check.actual, style="green")
    return Text("✗", style="red"), Text(check.name, style="red"), detail


def _one_line(text: str) -> str:
    lines = text.splitlines()
    return lines[0] + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else "") if lines else ""


def failure_text(result: ScenarioResult) -> str:
    """The mismatches of one scenario as plain text: expected, actual and the diff."""
    out: list[str] = []
    for check in result.failures:
        out.append(f"{check.name}:")
        if check.diff:
            out += [f"  {line}" for line in check.diff]
        else:
            out += [f"  expected: {check.expected}", f"  actual:   {check.actual}"]
    return "\n".join(out)


def results_json(results: Sequence[ScenarioResult], seconds: float) -> dict[str, Any]:
    return {"passed": all(r.passed for r in results), "summary": summary(results, seconds),
            "scenarios": [r.as_dict() for r in results]}


def junit_xml(results: Sequence[ScenarioResult], seconds: float) -> str:
    """JUnit XML (the schema Jenkins, GitLab and GitHub reporters read): one testcase per
    scenario, a ``failure`` with the diff per mismatching scenario, an ``error`` per scenario
    that could not run."""
    s = summary(results, seconds)
    counts = {"tests": str(s["scenarios"]), "failures": str(s["failed"]),
              "errors": str(s["errors"]), "time": f"{seconds:.3f}"}
    root = ET.Element("testsuites", {"name": SUITE, **counts})
    suite = ET.SubElement(root, "testsuite", {
        "name": SUITE, **counts, "skipped": "0",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")})
    for result in results:
        case = ET.SubElement(suite, "testcase", {
            "classname": "infrabot.scenarios", "name": result.name, "file": result.path,
            "time": f"{result.seconds:.3f}"})
        if result.error is not None:
            ET.SubElement(case, "error", {"type": "ScenarioError",
                                          "message": result.error}).text = result.error
        elif result.failures:
            names = ", ".join(c.name for c in result.failures)
            message = f"{len(result.failures)} of {len(result.checks)} expectations " \
                      f"mismatched: {names}"
            ET.SubElement(case, "failure", {"type": "ExpectationMismatch",
                                            "message": message}).text = failure_text(result)
        out = [f"{'PASS' if c.passed else 'FAIL'} {c.name}: {_one_line(c.actual)}"
               for c in result.checks] + [f"NOTE {n}" for n in result.notes]
        ET.SubElement(case, "system-out").text = "\n".join(out)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
