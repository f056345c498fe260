"""One audit record per call, allowed or denied; never the raw token."""

from __future__ import annotations

from pathlib import Path

from orchestrator.identity import SigningKey, generate_private_key, signing_key_of

PULL = {"owner": "acme", "repo": "service-x", "pull_number": 124}


def test_an_allowed_call_leaves_one_complete_record(stack, http):
    ctx = {"run_id": "run-audit-allowed"}
    actors = ("agent:cleanup", "agent:argocd", "agent:infrabot")
    token = stack.token("aws", actors=actors, ctx=ctx, scope="urn:infra:infrastructure:clean")
    params = {"Resources": ["i-0a1b2c3d4e5f60001"], "Tags": [{"Key": "scratch"}]}
    response = stack.call(http, "aws.ec2.delete_tags", params, token=token,
                          headers={"X-Request-Id": "req-audit-allowed-1"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-audit-allowed-1"
    [record] = stack.records(response)
    assert record.service == "aws"
    assert record.action == "tags:delete"
    assert record.resource == "aws:ec2:i-0a1b2c3d4e5f60001"
    assert (record.decision, record.reason, record.status) == ("allow", "ok", 200)
    assert record.performed_by == "agent:cleanup"
    assert record.on_behalf_of == "user:sam"
    assert record.chain == ("agent:cleanup", "agent:argocd", "agent:infrabot", "user:sam")
    assert record.scopes == ("urn:infra:infrastructure:clean",)
    assert record.context == {"trigger": "ci_pipeline", "environment": "prod",
                              "repository": "acme/service-x", "commit": "9f2c1e7",
                              "run_id": "run-audit-allowed"}
    assert record.run_id == "run-audit-allowed"
    assert record.jti and record.jti in {r.jti for r in stack.audit.query(run_id=record.run_id)}
    assert record.time.tzinfo is not None


def test_a_refusal_before_verification_has_no_identity(stack_factory, http):
    # A stack of its own: a request with no credential is recorded only as its source's first
    # of the minute (later ones are counted), so a shared stack's earlier tests would hide it.
    stack = stack_factory()
    other = signing_key_of(generate_private_key("ES256"), "ES256")
    forged = stack.token("github", key=SigningKey(kid=stack.ring.current.kid, alg="ES256",
                                                  private=other.private, public=other.public))
    for token in ("", forged, "garbage"):
        response = stack.call(http, "github.pull.read", PULL, token=token)
        [record] = stack.records(response)
        assert record.decision == "deny"
        assert record.resource == "github:acme/service-x#pr-124"
        assert record.action == "pr:read"
        assert record.status == response.status_code
        assert record.reason == response.json()["reason"]
        assert (record.performed_by, record.on_behalf_of, record.jti, record.run_id) == (
            None, None, None, None)
        assert record.chain == () and record.context == {}


def test_a_refusal_after_verification_names_who_tried(stack, http):
    response = stack.call(http, "github.pull.read", PULL, ctx={"run_id": "run-audit-denied"},
                          scope="urn:infra:deploy:comment")
    assert response.status_code == 403
    [record] = stack.records(response)
    assert (record.decision, record.reason, record.status) == ("deny", "insufficient_scope", 403)
    assert record.performed_by == "agent:infrabot" and record.on_behalf_of == "user:sam"
    assert record.run_id == "run-audit-denied"


def test_each_call_leaves_exactly_one_record(stack, http):
    run = "run-audit-count"
    for _ in range(3):
        stack.call(http, "pagerduty.incident.read", {"id": "P7X9K2Q"}, ctx={"run_id": run})
    stack.call(http, "pagerduty.incident.read", {"id": "nope"}, ctx={"run_id": run})
    records = stack.audit.query(run_id=run)
    assert [(r.decision, r.reason, r.status) for r in records] == [
        ("allow", "ok", 200)] * 3 + [("deny", "not_found", 404)]
    assert len({r.request_id for r in records}) == 4


def test_unknown_routes_and_methods_are_audited(stack, http):
    # with a credential: anonymous ones are counted per minute (test_anonymous_trail.py)
    sent = {"Authorization": f"Bearer {stack.token('datadog')}"}
    missing = http.get(stack.urls["datadog"] + "/api/v2/nothing", headers=sent)
    wrong = http.delete(stack.urls["datadog"] + "/api/v1/query", headers=sent)
    assert (missing.status_code, wrong.status_code) == (404, 405)
    for response, reason in ((missing, "not_found"), (wrong, "method_not_allowed")):
        assert response.json()["reason"] == reason
        [record] = stack.records(response)
        assert (record.action, record.decision, record.reason) == ("route:unknown", "deny", reason)


def test_a_known_route_with_a_trailing_slash_is_audited_not_redirected(stack, http):
    sent = {"Authorization": f"Bearer {stack.token('datadog')}"}
    response = http.get(stack.urls["datadog"] + "/api/v1/monitor/1001/", headers=sent)
    assert (response.status_code, response.json()["reason"]) == (404, "not_found")
    assert "location" not in response.headers
    [record] = stack.records(response)
    assert (record.action, record.decision, record.reason) == ("route:unknown", "deny",
                                                               "not_found")


def test_a_request_id_that_is_not_safe_is_replaced(stack, http):
    token = stack.token("datadog")
    for bad in ("x" * 200, "has space", "a\u00e9b".encode("latin-1"), token):
        response = stack.call(http, "datadog.monitor.read", {"monitor_id": 1001},
                              headers={"X-Request-Id": bad})
        assert response.headers["x-request-id"] != bad
        assert len(stack.records(response)) == 1


def test_the_raw_token_never_reaches_the_database(stack, http):
    tokens = [stack.token(s) for s in ("datadog", "github", "aws", "pagerduty")]
    for token in tokens:
        stack.call(http, "datadog.monitor.read", {"monitor_id": 1001}, token=token)
        http.get(stack.urls["github"] + "/repos/acme/service-x/pulls/124",
                 params={"access_token": token})
        http.get(stack.urls["aws"] + "/" + token)
        stack.call(http, "datadog.monitor.read", {"monitor_id": 1001},
                   headers={"X-Request-Id": token}, token=token)
    db = Path(stack.audit.target)
    data = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    for token in tokens:
        for part in token.split("."):
            assert part.encode() not in data
    assert stack.audit.verify().ok
