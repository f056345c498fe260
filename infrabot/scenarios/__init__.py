"""End-to-end chain tests with expected outcomes (``infrabot check``), and the preflight of a
workflow for a user (``infrabot workflows check``).

A scenario file (``workflows/scenarios/*.yaml``, schema in :mod:`infrabot.scenarios._model`)
states a CI event, optional changes to the directory and workflows, and what must happen at the
webhook, the root grant and every hop. :func:`load_scenarios` reads and checks the files (errors
name file:line); :func:`run_scenarios` runs each on an embedded system with a private copy of the
workflows and compares the run's event log with every expectation; :func:`render_results`,
:func:`results_json` and :func:`junit_xml` report the verdicts. :func:`preflight` answers, with the
pure identity core and before anything runs, which steps a user's run would be allowed.
"""

from infrabot.scenarios._checks import Check
from infrabot.scenarios._loader import (
    ScenarioFile,
    load_scenario,
    load_scenarios,
    scenario_files,
    select_scenarios,
)
from infrabot.scenarios._model import Scenario
from infrabot.scenarios._preflight import Preflight, StepVerdict, preflight
from infrabot.scenarios._report import (
    junit_xml,
    render_results,
    results_json,
    summary_line,
)
from infrabot.scenarios._runner import RUN_TIMEOUT, ScenarioResult, run_scenarios

__all__ = [
    "RUN_TIMEOUT",
    "Check",
    "Preflight",
    "Scenario",
    "ScenarioFile",
    "ScenarioResult",
    "StepVerdict",
    "junit_xml",
    "load_scenario",
    "load_scenarios",
    "preflight",
    "render_results",
    "results_json",
    "run_scenarios",
    "scenario_files",
    "select_scenarios",
    "summary_line",
]
