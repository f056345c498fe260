"""The shipped pytest plugin, used the way a team uses it: a test file in their own suite, run
by pytest in its own process (pytester), with the plugin found through its entry point."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PASSING = '''
from infrabot.testing import assert_allowed, assert_chain, assert_denied


def test_sam_deploys_to_prod(infrabot_system):
    run = infrabot_system.deploy(user="sam", service="service-x", environment="prod")
    assert run.status == "succeeded"
    assert_allowed(run, agent="agent:argocd", action="aws.ec2.create_tags")
    cleanup = run.tokens("agent:cleanup")[0]
    assert_chain(cleanup, ["agent:cleanup", "agent:infrabot"],
                 on_behalf_of="user:sam")


def test_a_manual_prod_run_may_not_comment(infrabot_system):
    run = infrabot_system.deploy(user="sam", environment="prod", trigger="manual")
    assert run.status == "denied"
    assert_allowed(run, agent="agent:infrabot", action="datadog.metrics.query")
    assert_denied(run, agent="agent:infrabot", action="github.comment.create",
                  reason="scope_not_grantable")


def test_alex_may_not_hand_off_a_deploy(infrabot_system):
    run = infrabot_system.deploy(user="alex")
    assert_denied(run, agent="agent:infrabot", action="hand-off to agent:argocd",
                  reason="scope_not_grantable")
'''

FAILING = '''
from infrabot.testing import assert_allowed, assert_chain


def test_expects_too_much(infrabot_system):
    run = infrabot_system.deploy(user="alex")
    assert_allowed(run, agent="agent:argocd", action="aws.ec2.create_tags")


def test_expects_the_wrong_chain(infrabot_system):
    run = infrabot_system.deploy(user="sam")
    assert_chain(run.tokens("agent:argocd")[0], ["agent:argocd"], on_behalf_of="user:robin")
'''


def test_a_passing_chain_test_in_a_users_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_chain=PASSING)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_a_failing_expectation_says_what_the_run_did(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_chain=FAILING)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert re.search(
        r"AssertionError: expected agent:argocd to be allowed aws\.ec2\.create_tags \(aws "
        r"tags:create\), but run run-[0-9a-f]+ ended denied \(agent:infrabot exchange for "
        r"hand-off to agent:argocd: invalid_scope \(scope_not_grantable\)\); agent:argocd "
        r"did: nothing\n", out), out
    assert ("AssertionError: token chain mismatch: actors ['agent:argocd', 'agent:infrabot'] "
            "(current first), expected ['agent:argocd']; on behalf of 'user:sam', expected "
            "'user:robin'\n") in out, out


def test_the_users_own_workflows_directory(pytester: pytest.Pytester) -> None:
    """--infrabot-workflows (or the ini option) points the system at the team's own folder."""
    own = pytester.path / "ours"
    shutil.copytree(REPO / "workflows", own)
    (own / "post-deploy.yaml").write_text(
        (own / "post-deploy.yaml").read_text().replace(
            "Post-deploy checks, rollout record and cleanup", "Our own post-deploy"))
    pytester.makeini("[pytest]\ninfrabot_workflows = ours\n")
    pytester.makepyfile(test_own='''
def test_uses_our_folder(infrabot_system):
    assert infrabot_system.settings.workflows_dir.name == "ours"
    assert infrabot_system.deploy(user="sam").status == "succeeded"
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
