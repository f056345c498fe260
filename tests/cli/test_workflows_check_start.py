"""``infrabot workflows check`` judges first whether the run would start at all: a CI event of
``--trigger`` in ``--env`` must start the workflow checked, chosen as the webhook receiver
chooses (:func:`orchestrator.workflows.select`); otherwise one line and exit status 1."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# pytest's prepend import mode puts tests/ on sys.path, where tests/mock_services (no __init__)
# would shadow the real `mock_services` (installed editable, found after sys.path).
_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))
if getattr(sys.modules.get("mock_services"), "__file__", "") is None:
    del sys.modules["mock_services"]

import pytest
from click.testing import CliRunner, Result

from infrabot.cli._workflows import workflows
from orchestrator.errors import ConfigError
from orchestrator.workflows import load_directory, load_workflows, select

WORKFLOWS = _REPO / "workflows"
POST_DEPLOY_TRIGGER = "(post-deploy runs in prod, staging, triggered by ci_pipeline)"


def run(*args: str, **env: str) -> Result:
    return CliRunner(env=env or None).invoke(workflows, list(args))


def error_line(result: Result) -> str:
    """Exit 1, nothing on stdout, one ``Error:`` line on stderr (no traceback)."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: "), line
    return line.removeprefix("Error: ")


@pytest.mark.parametrize("as_json", [(), ("--json",)])
def test_an_environment_no_workflow_handles_never_starts(as_json: tuple[str, ...]) -> None:
    """The receiver refuses this event 422 no_matching_workflow: so does the check."""
    result = run("check", "post-deploy", "--user", "sam", "--env", "nowhere", *as_json)
    assert error_line(result) == (
        "post-deploy would never start: no_matching_workflow: no workflow handles a "
        "ci_pipeline deployment or workflow_run (task deploy) in nowhere "
        f"{POST_DEPLOY_TRIGGER}")


@pytest.mark.parametrize("as_json", [(), ("--json",)])
def test_a_trigger_the_workflow_does_not_take_starts_another(as_json: tuple[str, ...]) -> None:
    """post-deploy takes ci_pipeline only; a manual event in staging starts manual-check."""
    result = run("check", "post-deploy", "--user", "sam", "--env", "staging", "--trigger",
                 "manual", *as_json)
    assert error_line(result) == (
        "post-deploy would never start: a manual deployment or workflow_run (task deploy) in "
        f"staging starts manual-check {POST_DEPLOY_TRIGGER}")
    other = run("check", "manual-check", "--user", "sam", "--env", "staging")
    assert error_line(other) == (
        "manual-check would never start: a ci_pipeline deployment or workflow_run (task "
        "deploy) in staging starts post-deploy (manual-check runs in prod, staging, triggered "
        "by manual)")


def test_the_first_workflow_by_name_that_matches_wins(tmp_path: Path) -> None:
    """Two workflows take the same events: the receiver starts the first by name, so the
    other never starts, whatever its exchanges would be allowed."""
    folder = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, folder)
    text = (folder / "post-deploy.yaml").read_text(encoding="utf-8")
    (folder / "a-copy.yaml").write_text(text.replace("name: post-deploy", "name: a-copy"),
                                        encoding="utf-8")
    env = {"INFRABOT_WORKFLOWS_DIR": str(folder)}
    result = run("check", "post-deploy", "--user", "sam", **env)
    assert error_line(result) == (
        "post-deploy would never start: a ci_pipeline deployment or workflow_run (task deploy) "
        f"in prod starts a-copy {POST_DEPLOY_TRIGGER}")
    assert run("check", "a-copy", "--user", "sam", **env).exit_code == 0


def test_the_verdict_is_the_receivers_choice_for_every_shipped_workflow() -> None:
    """For every shipped workflow, environment and trigger: the check says "would never start"
    exactly when no event type the workflow takes selects it."""
    found = load_workflows(WORKFLOWS, load_directory(WORKFLOWS / "directory.yaml"))

    def selected(name: str, environment: str, trigger: str) -> bool:
        t = found[name].trigger
        for event_type in t.events:
            try:
                if select(found, event_type=event_type, environment=environment,
                          trigger=trigger, task=t.task).name == name:
                    return True
            except ConfigError as exc:
                assert exc.reason == "no_matching_workflow"
        return False

    seen = set()
    for name in sorted(found):
        for environment in ("prod", "staging", "nowhere"):
            for trigger in ("ci_pipeline", "manual"):
                result = run("check", name, "--user", "sam", "--env", environment,
                             "--trigger", trigger)
                starts = selected(name, environment, trigger)
                seen.add(starts)
                assert ("would never start" not in result.output) == starts, result.output
                assert result.exit_code == (1 if not starts else result.exit_code)
                if starts:
                    assert result.stderr == "" and "exchanges" in result.stdout
    assert seen == {True, False}


def test_help_states_the_exit_codes() -> None:
    result = run("check", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for line in ("0 every exchange would be allowed",
                 "1 some would be refused or never reached, or the run would never start",
                 "2 unknown workflow or user", "no_matching_workflow"):
        assert line in text, line
