"""``infrabot demo``: the whole story on an embedded system, as data, in the terminal and as a
self-contained HTML report."""

from infrabot.demo._attacks import Attack
from infrabot.demo._render import render_demo
from infrabot.demo._story import DemoResult, demo_settings, run_demo

__all__ = ["Attack", "DemoResult", "demo_settings", "render_demo", "run_demo"]
