"""``infrabot demo``: the whole story on an embedded system, as data, in the terminal and as a
self-contained HTML report."""

from orchestrator.demo._attacks import Attack
from orchestrator.demo._render import render_demo
from orchestrator.demo._story import DemoResult, demo_settings, run_demo

__all__ = ["Attack", "DemoResult", "demo_settings", "render_demo", "run_demo"]
