"""Mock PagerDuty behaviour: incidents through their life, notes, listing."""

from __future__ import annotations


def test_the_seeded_incident_is_triggered_for_service_x(stack_factory, http):
    stack = stack_factory(services=("pagerduty",))
    listed = stack.call(http, "pagerduty.incident.list", {"statuses": ["triggered"],
                                                          "service_ids": ["PSVCX01"]}).json()
    assert [i["id"] for i in listed["incidents"]] == ["P7X9K2Q"]
    assert listed["limit"] == 25 and listed["more"] is False


def test_an_incident_is_created_acknowledged_noted_and_resolved(stack, http):
    created = stack.call(http, "pagerduty.incident.create", {
        "title": "service-x error rate", "service_id": "PSVCX01", "details": "5xx at 4%"})
    assert created.status_code == 201
    iid = created.json()["incident"]["id"]
    assert created.json()["incident"]["status"] == "triggered"
    acked = stack.call(http, "pagerduty.incident.acknowledge", {"id": iid})
    assert acked.json()["incident"]["status"] == "acknowledged"
    note = stack.call(http, "pagerduty.note.create", {"id": iid, "content": "rolling back"})
    assert note.status_code == 201 and note.json()["note"]["content"] == "rolling back"
    resolved = stack.call(http, "pagerduty.incident.resolve", {"id": iid, "resolution": "fixed"},
                          actors=("agent:cleanup", "agent:argocd", "agent:infrabot"),
                          scope="urn:infra:incident:resolve")
    incident = resolved.json()["incident"]
    assert (incident["status"], incident["resolve_reason"]) == ("resolved", "fixed")
    assert incident["last_status_change_by"]["id"] == "agent:cleanup"
    [record] = stack.records(resolved)
    assert (record.action, record.resource) == ("incident:resolve", f"pagerduty:incident:{iid}")
    assert stack.records(acked)[0].action == "incident:acknowledge"
    again = stack.call(http, "pagerduty.incident.acknowledge", {"id": iid})
    assert (again.status_code, again.json()["reason"]) == (409, "incident_already_resolved")
    read = stack.call(http, "pagerduty.incident.read", {"id": iid}).json()["incident"]
    assert read["status"] == "resolved"
    history = stack.apps["pagerduty"].state.service.history
    assert (iid, "resolved", "agent:cleanup", "user:sam") in history


def test_acknowledge_and_resolve_need_the_resolve_scope(stack, http):
    response = stack.call(http, "pagerduty.incident.resolve", {"id": "P7X9K2Q"},
                          scope="urn:infra:incident:write")
    assert response.status_code == 403
    assert 'scope="urn:infra:incident:resolve"' in response.headers["www-authenticate"]
