"""A service declared by an OpenAPI document (the shipped chat example), served over real HTTP
behind the same enforcement layer as the built-in four: allowed calls, refusals for scope, a
bound token without its proof, the objects a context owns, idempotency, one audit record per
call, the document's schemas on both sides, and its /openapi.json."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mock_services._declared_schemas import Schemas
from orchestrator.identity import generate_private_key, jkt_of, make_proof, signing_key_of
from orchestrator.services import DeclaredService, load_and_install
from orchestrator.workflows import load_directory

Stack = Any  # conftest.Stack: not importable by name when several conftests are collected
REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "workflows"
POST = {"channel": "deploys", "text": "service-x 9f2c1e7 is live in prod", "user": "user:sam"}


def declared(folder: Path = SHIPPED) -> tuple[DeclaredService, ...]:
    return load_and_install(folder, load_directory(folder / "directory.yaml"))


@pytest.fixture(autouse=True)
def _shipped_services_after() -> Iterator[None]:
    yield
    declared()


@pytest.fixture
def chat(stack_factory: Callable[..., Stack]) -> Stack:
    return stack_factory(services=(), declared=declared())


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"task-{uuid.uuid4()}"}


def test_a_post_is_allowed_audited_and_can_be_read_back(chat: Stack, http: httpx.Client) -> None:
    posted = chat.call(http, "chat.postMessage", POST, scope="urn:infra:chat:write")
    assert posted.status_code == 201, posted.text
    message = posted.json()
    assert message == {"ts": "1764400000.000100", "channel": "deploys", "text": POST["text"],
                       "user": "user:sam", "id": message["id"]}  # ts: the document's example
    [record] = chat.records(posted)
    assert (record.service, record.action, record.resource, record.decision, record.reason,
            record.status) == ("chat", "message:post", "chat:channel:deploys", "allow", "ok",
                               201)
    assert (record.on_behalf_of, record.performed_by) == ("user:sam", "agent:infrabot")
    read = chat.call(http, "chat.getMessage", {"channel": "deploys", "message": message["id"]},
                     scope="urn:infra:chat:read")
    assert read.status_code == 200 and read.json() == message
    listed = chat.call(http, "chat.listMessages", {"channel": "deploys", "user": "user:sam"},
                       scope="urn:infra:chat:read")
    assert listed.json() == {"messages": [message]}
    other = chat.call(http, "chat.listMessages", {"channel": "deploys", "user": "user:alex"},
                      scope="urn:infra:chat:read")
    assert other.json() == {"messages": []}


def test_a_token_without_the_operations_scope_is_refused(chat: Stack,
                                                         http: httpx.Client) -> None:
    response = chat.call(http, "chat.postMessage", POST, scope="urn:infra:chat:read")
    assert response.status_code == 403
    assert response.json()["reason"] == "insufficient_scope"
    assert 'scope="urn:infra:chat:write"' in response.headers["www-authenticate"]
    assert chat.apps["chat"].state.service.listing("/channels/deploys/messages") == []
    [record] = chat.records(response)
    assert (record.action, record.decision, record.reason, record.status) == (
        "message:post", "deny", "insufficient_scope", 403)


def test_a_token_for_another_service_is_refused(chat: Stack, http: httpx.Client) -> None:
    token = chat.token("chat", aud="http://127.0.0.1:9/")
    response = chat.call(http, "chat.listChannels", {}, token=token)
    assert (response.status_code, response.json()["reason"]) == (401, "audience_mismatch")


def test_a_bound_token_is_taken_only_with_a_proof_by_its_key(
        stack_factory: Callable[..., Stack], http: httpx.Client) -> None:
    """DPoP binding is on by default: the declared service checks proofs as the four do."""
    bound = stack_factory(services=(), declared=declared(), dpop_binding=True)
    agent_key = signing_key_of(generate_private_key("ES256"), "ES256")
    token = bound.token("chat", scope="urn:infra:chat:write", cnf=jkt_of(agent_key.public))
    url = bound.urls["chat"] + "/channels/deploys/messages"
    body = {"text": "hello"}
    without = http.post(url, json=body, headers={"Authorization": f"DPoP {token}"})
    assert without.status_code == 401
    assert without.json()["reason"] == "dpop_proof_missing"
    assert without.headers["www-authenticate"].startswith('DPoP realm="chat", error=')
    as_bearer = http.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    assert as_bearer.json()["reason"] == "dpop_bound_token_as_bearer"
    proof = make_proof(agent_key, method="POST", url=url, now=int(time.time()),
                       access_token=token)
    taken = http.post(url, json=body, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert taken.status_code == 201, taken.text
    replayed = http.post(url, json=body, headers={"Authorization": f"DPoP {token}",
                                                  "DPoP": proof})
    assert replayed.json()["reason"] == "dpop_proof_replayed"
    reasons = [r.reason for r in bound.audit.query() if r.service == "chat"]
    assert reasons == ["dpop_proof_missing", "dpop_bound_token_as_bearer", "ok",
                       "dpop_proof_replayed"]


def test_the_same_idempotency_key_posts_once(chat: Stack, http: httpx.Client) -> None:
    headers, token = key(), chat.token("chat")
    first = chat.call(http, "chat.postMessage", POST, token=token, headers=headers)
    second = chat.call(http, "chat.postMessage", POST, token=token, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    assert second.headers["idempotent-replayed"] == "true"
    assert len(chat.apps["chat"].state.service.listing("/channels/deploys/messages")) == 1
    assert [r.reason for r in chat.records(second)] == ["idempotent_replay"]
    reused = chat.call(http, "chat.postMessage", {**POST, "text": "another"}, token=token,
                       headers=headers)
    assert (reused.status_code, reused.json()["reason"]) == (422, "idempotency_key_reused")


def test_a_context_reads_and_lists_only_the_objects_it_owns(chat: Stack,
                                                           http: httpx.Client) -> None:
    """Created in prod, a channel is prod's: a staging run's token neither reads it nor
    posts to it nor sees it listed (its x-resource names the channel)."""
    created = chat.call(http, "chat.createChannel", {"name": "deploys"})
    assert created.status_code == 201, created.text
    channel = created.json()
    assert channel == {"is_archived": False, "topic": "", "name": "deploys",
                       "id": channel["id"]}
    assert channel["id"].startswith("C")
    staging = {"environment": "staging"}
    read = chat.call(http, "chat.getChannel", {"channel": channel["id"]}, ctx=staging)
    assert (read.status_code, read.json()["reason"]) == (403, "environment_mismatch")
    [record] = chat.records(read)
    assert {k: v for k, v in record.context.items() if "." in k} == {
        "target.resource": f"chat:/channels/{channel['id']}", "target.environment": "prod",
        "claimed.environment": "staging"}
    post = chat.call(http, "chat.postMessage", {**POST, "channel": channel["id"]}, ctx=staging)
    assert (post.status_code, post.json()["reason"]) == (403, "environment_mismatch")
    assert chat.call(http, "chat.listChannels", {}, ctx=staging).json() == {"channels": []}
    assert chat.call(http, "chat.listChannels", {}).json() == {"channels": [channel]}
    assert chat.call(http, "chat.getChannel", {"channel": channel["id"]}).json() == channel


@pytest.mark.parametrize(("action", "params", "status", "reason", "description"), [
    ("chat.postMessage", {"channel": "deploys"}, 422, "validation_failed",
     "body: fails required"),
    ("chat.postMessage", {"channel": "deploys", "txt": "x"}, 422, "validation_failed",
     "body: fails additionalProperties"),
    ("chat.postMessage", {"channel": "deploys", "text": ""}, 422, "validation_failed",
     "body.text: fails minLength"),
    ("chat.getChannel", {"channel": "no such!"}, 422, "validation_failed",
     "path.channel: fails pattern"),
    ("chat.getMessage", {"channel": "deploys", "message": "M999999"}, 404, "not_found",
     "no chat:/channels/deploys/messages/M999999"),
])
def test_requests_the_document_refuses_are_answered_and_audited(
        chat: Stack, http: httpx.Client, action: str, params: dict[str, Any], status: int,
        reason: str, description: str) -> None:
    response = chat.call(http, action, params)
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["reason"], body["error_description"]) == (reason, description)
    [record] = chat.records(response)
    assert (record.decision, record.reason, record.status) == ("deny", reason, status)


def test_a_post_without_a_body_is_refused(chat: Stack, http: httpx.Client) -> None:
    response = http.post(chat.urls["chat"] + "/channels/deploys/messages",
                         headers={"Authorization": f"Bearer {chat.token('chat')}"})
    assert (response.status_code, response.json()["error_description"]) == (
        422, "body: a JSON body is required")


def test_a_trailing_slash_is_an_audited_404_not_a_redirect(chat: Stack,
                                                             http: httpx.Client) -> None:
    response = http.post(chat.urls["chat"] + "/channels/deploys/messages/", json=POST,
                         headers={"Authorization": f"Bearer {chat.token('chat')}", **key()})
    assert (response.status_code, response.json()["reason"]) == (404, "not_found")
    [record] = chat.records(response)
    assert (record.action, record.decision, record.reason) == ("route:unknown", "deny",
                                                               "not_found")


def test_an_answer_the_document_refuses_is_a_500_naming_the_operation(
        tmp_path: Path, stack_factory: Callable[..., Stack], http: httpx.Client) -> None:
    folder = Path(shutil.copytree(SHIPPED, tmp_path / "workflows"))
    path = folder / "services/chat.openapi.yaml"
    document = yaml.safe_load(path.read_text())
    post = document["paths"]["/channels/{channel}/messages"]["post"]
    post["responses"]["201"]["content"]["application/json"]["example"] = {"ts": 1764400000}
    path.write_text(yaml.safe_dump(document))
    broken = stack_factory(services=(), declared=declared(folder))
    response = broken.call(http, "chat.postMessage", POST)
    assert response.status_code == 500
    assert response.json() == {
        "error": "server_error", "reason": "response_invalid",
        "error_description": "chat.postMessage: the mock's answer breaks the document's 201 "
                             "response: response.ts: fails type"}
    assert broken.apps["chat"].state.service.listing("/channels/deploys/messages") == []


def test_the_openapi_document_is_served_with_its_origin_and_scopes(chat: Stack,
                                                                   http: httpx.Client) -> None:
    response = http.get(chat.urls["chat"] + "/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "Chat API (mock)"
    assert document["servers"] == [{"url": chat.urls["chat"]}]
    post = document["paths"]["/channels/{channel}/messages"]["post"]
    assert post["x-required-scope"] == "urn:infra:chat:write"
    assert post["security"] == [{"delegated_token": ["urn:infra:chat:write"]}]
    flows = document["components"]["securitySchemes"]["delegated_token"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == chat.settings.auth_url + "/token"
    assert set(flows["clientCredentials"]["scopes"]) == {"urn:infra:chat:read",
                                                         "urn:infra:chat:write"}
    assert not [r for r in chat.audit.query() if r.service == "chat"]  # public, not audited


def test_an_unrouted_request_is_answered_and_audited(chat: Stack, http: httpx.Client) -> None:
    response = http.get(chat.urls["chat"] + "/chat.postMessage",
                        headers={"Authorization": f"Bearer {chat.token('chat')}"})
    assert (response.status_code, response.json()["reason"]) == (404, "not_found")
    [record] = chat.records(response)
    assert (record.service, record.action, record.decision) == ("chat", "route:unknown", "deny")


ROOMS = """
/rooms:
  post:
    operationId: createRoom
    x-required-scope: urn:infra:chat:write
    requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/NewChannel"}}}}
    responses: {"201": {description: r, content: {application/json: {schema: {$ref: "#/components/schemas/Room"}}}}}
/rooms/{room}:
  parameters: [{name: room, in: path, required: true, schema: {$ref: "#/components/schemas/Id"}}]
  get:
    operationId: getRoom
    x-required-scope: urn:infra:chat:read
    responses: {"200": {description: r, content: {application/json: {schema: {$ref: "#/components/schemas/Room"}}}}}
  put:
    operationId: putRoom
    x-required-scope: urn:infra:chat:write
    requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/NewChannel"}}}}
    responses: {"200": {description: r, content: {application/json: {schema: {$ref: "#/components/schemas/Room"}}}}}
  delete:
    operationId: deleteRoom
    x-required-scope: urn:infra:chat:write
    responses:
      "200":
        description: gone
        content: {application/json: {schema: {type: object, required: [deleted]}, example: {}}}
/trees:
  post:
    operationId: createTree
    x-required-scope: urn:infra:chat:write
    requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/Node"}}}}
    responses: {"201": {description: t}}
/trees/{tree}:
  put:
    operationId: putTree
    x-required-scope: urn:infra:chat:write
    requestBody: {required: true, content: {application/json: {schema: {type: object}}}}
    responses: {"200": {description: t}}
  get:
    operationId: getTree
    x-required-scope: urn:infra:chat:read
    responses: {"200": {description: t, content: {application/json: {schema: {$ref: "#/components/schemas/Node"}}}}}
"""
SCHEMAS = """
Room: {type: object, required: [id, name], properties: {id: {type: string}, name: {type: string}}}
Node: {type: object, properties: {child: {$ref: "#/components/schemas/Node"}}}
"""


@pytest.fixture
def rooms(tmp_path: Path, stack_factory: Callable[..., Stack]) -> Stack:
    """The shipped chat document plus rooms (PUT under a key not named ``id``, a DELETE whose
    example breaks its schema) and trees (a recursive schema)."""
    folder = Path(shutil.copytree(SHIPPED, tmp_path / "workflows"))
    path = folder / "services/chat.openapi.yaml"
    document = yaml.safe_load(path.read_text())
    document["paths"].update(yaml.safe_load(ROOMS))
    document["components"]["schemas"].update(yaml.safe_load(SCHEMAS))
    path.write_text(yaml.safe_dump(document))
    return stack_factory(services=(), declared=declared(folder))


def audited(stack: Stack, response: httpx.Response) -> tuple[str, str, int]:
    [record] = stack.records(response)
    return record.decision, record.reason, record.status


def test_a_refused_delete_changes_nothing_and_a_retry_gets_the_same_answer(
        rooms: Stack, http: httpx.Client) -> None:
    created = rooms.call(http, "chat.createRoom", {"name": "ops"})
    assert created.status_code == 201, created.text
    room = created.json()["id"]
    headers, token = key(), rooms.token("chat")
    first = rooms.call(http, "chat.deleteRoom", {"room": room}, token=token, headers=headers)
    assert (first.status_code, first.json()["reason"]) == (500, "response_invalid"), first.text
    assert first.json()["error_description"] == (
        "chat.deleteRoom: the mock's answer breaks the document's 200 response: "
        "response: fails required")
    assert audited(rooms, first) == ("deny", "response_invalid", 500)
    assert rooms.apps["chat"].state.service.get("/rooms", room) is not None
    retry = rooms.call(http, "chat.deleteRoom", {"room": room}, token=token, headers=headers)
    assert (retry.status_code, retry.content) == (500, first.content)
    assert audited(rooms, retry) == ("deny", "response_invalid", 500)
    read = rooms.call(http, "chat.getRoom", {"room": room})
    assert (read.status_code, read.json()) == (200, {"id": room, "name": "ops"})


def test_a_put_keeps_its_object_under_the_paths_key_with_that_id(
        rooms: Stack, http: httpx.Client) -> None:
    put = rooms.call(http, "chat.putRoom", {"room": "R9", "name": "ops"})
    assert (put.status_code, put.json()) == (200, {"id": "R9", "name": "ops"}), put.text
    assert audited(rooms, put) == ("allow", "ok", 200)
    replaced = rooms.call(http, "chat.putRoom", {"room": "R9", "name": "sre"})
    assert (replaced.status_code, replaced.json()) == (200, {"id": "R9", "name": "sre"})
    read = rooms.call(http, "chat.getRoom", {"room": "R9"})
    assert (read.status_code, read.json()) == (200, {"id": "R9", "name": "sre"})
    rooms.call(http, "chat.putRoom", {"room": "R000001", "name": "taken"})
    posted = rooms.call(http, "chat.createRoom", {"name": "new"})  # a new id skips kept ones
    assert (posted.status_code, posted.json()) == (201, {"id": "R000002", "name": "new"})


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for _ in range(depth):
        node = {"child": node}
    return node


def test_a_body_too_deeply_nested_to_check_is_the_callers_error(
        rooms: Stack, http: httpx.Client) -> None:
    shallow = rooms.call(http, "chat.createTree", nested(20))
    assert shallow.status_code == 201, shallow.text
    response = rooms.call(http, "chat.createTree", nested(300))
    assert response.status_code == 422, response.text
    assert (response.json()["reason"], response.json()["error_description"]) == (
        "validation_failed", "body: too deeply nested to check")
    assert audited(rooms, response) == ("deny", "validation_failed", 422)
    assert len(rooms.apps["chat"].state.service.listing("/trees")) == 1


def test_an_answer_too_deeply_nested_to_check_is_a_500(rooms: Stack,
                                                        http: httpx.Client) -> None:
    put = rooms.call(http, "chat.putTree", {"tree": "T1", **nested(300)})
    assert put.status_code == 200, put.text
    response = rooms.call(http, "chat.getTree", {"tree": "T1"})
    assert response.status_code == 500, response.text
    assert (response.json()["reason"], response.json()["error_description"]) == (
        "response_invalid", ("chat.getTree: the mock's answer breaks the document's 200 "
                             "response: response: too deeply nested to check"))
    assert audited(rooms, response) == ("deny", "response_invalid", 500)


def test_a_schema_ref_is_followed_as_the_validator_follows_it() -> None:
    """Percent-encoding and array indexes in a ``$ref`` (which the loader accepts) resolve for
    the handler's view of a schema as for the validator, so serve builds the app."""
    room = {"type": "object", "properties": {"id": {"type": "string"}}}
    left = {"type": "object", "properties": {"left": {"type": "integer"}}}

    def answer(ref: str) -> dict[str, Any]:
        return {"get": {"operationId": ref, "responses": {"200": {"description": "ok", "content": {
            "application/json": {"schema": {"$ref": ref}}}}}}}

    schemas = Schemas({
        "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
        "paths": {"/x": answer("#/components/schemas/My%20Room"),
                  "/y": answer("#/components/schemas/Pair/allOf/0")},
        "components": {"schemas": {"My Room": room, "Pair": {"allOf": [left]}}}})
    where = ("get", "responses", "200", "content", "application/json", "schema")
    assert schemas.resolved(("paths", "/x", *where)) == room
    assert schemas.resolved(("paths", "/y", *where)) == left
