"""Mock GitHub behaviour: pull requests, comments, deployment statuses, branch deletion."""

from __future__ import annotations

REPO = {"owner": "acme", "repo": "service-x"}


def test_the_seeded_pull_request_reads_like_github(stack, http):
    pull = stack.call(http, "github.pull.read", {**REPO, "pull_number": 124}).json()
    assert (pull["number"], pull["state"], pull["head"]["sha"]) == (124, "open", "9f2c1e7")
    assert pull["html_url"] == "https://github.com/acme/service-x/pull/124"
    missing = stack.call(http, "github.pull.read", {**REPO, "pull_number": 999})
    assert (missing.status_code, missing.json()["reason"]) == (404, "not_found")


def test_a_comment_is_posted_by_the_acting_agent_for_the_user(stack, http):
    actors = ("agent:infrabot",)
    created = stack.call(http, "github.comment.create",
                         {**REPO, "issue_number": 124, "body": "p99 latency is fine"},
                         actors=actors)
    assert created.status_code == 201
    comment = created.json()
    assert comment["user"] == {"login": "infrabot[bot]", "type": "Bot"}
    assert comment["issue_url"].endswith("/repos/acme/service-x/issues/124")
    listed = stack.call(http, "github.comment.list", {**REPO, "issue_number": 124}).json()
    assert comment in listed
    state = stack.apps["github"].state.service
    assert state.attribution[f"comment:{comment['id']}"] == ("agent:infrabot", "user:sam")


def test_deployment_statuses_are_created_newest_first(stack, http):
    params = {**REPO, "deployment_id": 9001}
    for state in ("in_progress", "success"):
        created = stack.call(http, "github.deployment_status.create", {**params, "state": state},
                             actors=("agent:argocd", "agent:infrabot"),
                             scope="urn:infra:deploy:create")
        assert created.status_code == 201
        assert created.json()["creator"]["login"] == "argocd[bot]"
    listed = stack.call(http, "github.deployment_status.list", params).json()
    assert [s["state"] for s in listed[:2]] == ["success", "in_progress"]
    assert listed[0]["environment"] == "prod"


def test_branches_are_deleted_once_and_the_default_branch_never(stack, http):
    branches = stack.apps["github"].state.service.branches[("acme", "service-x")]
    branches["feature/old-experiment"] = "1234567"
    params = {**REPO, "branch": "feature/old-experiment"}
    assert stack.call(http, "github.branch.delete", params).status_code == 204
    assert "feature/old-experiment" not in branches
    again = stack.call(http, "github.branch.delete", params)
    assert (again.status_code, again.json()["reason"]) == (422, "reference_does_not_exist")
    main = stack.call(http, "github.branch.delete", {**REPO, "branch": "main"})
    assert (main.status_code, main.json()["reason"]) == (422, "default_branch")
    assert "main" in branches
