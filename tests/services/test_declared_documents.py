"""Loading the services a workflows directory declares in ``services/<name>.openapi.yaml``:
the shipped chat document becomes catalogue actions named ``chat.<operationId>``, and every
broken document is refused with one line naming the file and the JSON path."""

from __future__ import annotations

import datetime
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.catalog import CATALOG, LISTING, build_request, service_names
from orchestrator.errors import ConfigError
from orchestrator.services import json_path, load_and_install, load_services
from orchestrator.workflows import load_directory, load_workflows

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "workflows"
CHAT = "services/chat.openapi.yaml"


@pytest.fixture(autouse=True)
def _shipped_services_after() -> Iterator[None]:
    """Each test may install another directory's services: the shipped ones again after."""
    yield
    load_and_install(SHIPPED, load_directory(SHIPPED / "directory.yaml"))


@pytest.fixture
def workflows(tmp_path: Path) -> Path:
    """A private copy of the shipped workflows directory."""
    return Path(shutil.copytree(SHIPPED, tmp_path / "workflows"))


Edit = Callable[[dict[str, Any]], None]


def edited(folder: Path, edit: Edit, name: str = CHAT) -> Path:
    path = folder / name
    document = yaml.safe_load(path.read_text())
    edit(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def refusal(folder: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_services(folder, load_directory(folder / "directory.yaml"))
    message = caught.value.message
    assert "\n" not in message
    return message


def test_the_shipped_chat_document_declares_its_operations_as_actions() -> None:
    services = load_and_install(SHIPPED, load_directory(SHIPPED / "directory.yaml"))
    [chat] = services
    assert chat.name == "chat" and service_names()[-1] == "chat"
    assert [a.name for a in chat.actions] == [
        "chat.createChannel", "chat.listChannels", "chat.getChannel", "chat.postMessage",
        "chat.listMessages", "chat.getMessage"]
    post = CATALOG["chat.postMessage"]
    assert (post.service, post.method, post.path, post.scope, post.audit_action, post.resource) \
        == ("chat", "POST", "/channels/{channel}/messages", "urn:infra:chat:write",
            "message:post", "chat:channel:{channel}")
    assert post.mutating and not CATALOG["chat.listMessages"].mutating
    assert (post.target.kind, post.target.fields) == ("chat.object", ("channel",))
    assert CATALOG["chat.createChannel"].target.kind == LISTING  # it names no stored object
    assert CATALOG["chat.listMessages"].query == (("user", "user"),)
    assert build_request("chat.postMessage", {"channel": "deploys", "text": "hi"}) == (
        "POST", "/channels/deploys/messages", {}, {"text": "hi"})
    assert build_request("chat.listMessages", {"channel": "deploys", "user": "user:sam"}) == (
        "GET", "/channels/deploys/messages", {"user": "user:sam"}, None)
    message = next(o for o in chat.operations if o.action.name == "chat.getMessage")
    assert message.binds == ("channel", "message")


def test_workflows_name_declared_operations_and_need_their_scopes() -> None:
    directory = load_directory(SHIPPED / "directory.yaml")
    found = load_workflows(SHIPPED, directory)
    assert found["announce"].agents[0].steps[0].action == "chat.postMessage"
    from orchestrator.workflows import required_scopes
    assert required_scopes(found["announce"]) == ["urn:infra:chat:write"]


def test_a_directory_without_declared_services_installs_none(workflows: Path) -> None:
    shutil.rmtree(workflows / "services")
    (workflows / "announce.yaml").unlink()
    (workflows / "scan-report.yaml").unlink()  # its notifier posts to chat
    load_workflows(workflows, load_directory(workflows / "directory.yaml"))
    assert "chat.postMessage" not in CATALOG and "chat" not in service_names()


def test_a_json_document_is_read_the_same(workflows: Path) -> None:
    source = workflows / CHAT
    target = workflows / "services/chat.openapi.json"
    target.write_text(json.dumps(yaml.safe_load(source.read_text())))
    source.unlink()
    [chat] = load_services(workflows, load_directory(workflows / "directory.yaml"))
    assert chat.source == target and len(chat.actions) == 6


def test_json_paths_quote_what_is_not_an_identifier() -> None:
    assert json_path(("paths", "/channels", "post", "x-required-scope")) \
        == "$.paths['/channels'].post['x-required-scope']"
    assert json_path(("paths", "/a'b", "parameters", 0)) == "$.paths['/a\\'b'].parameters[0]"


def _op(document: dict[str, Any], route: str, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"][route][method]
    return operation


def test_an_operation_without_a_scope_is_refused(workflows: Path) -> None:
    path = edited(workflows, lambda d: _op(d, "/channels/{channel}", "get").pop(
        "x-required-scope"))
    assert refusal(workflows) == (
        f"{path}: $.paths['/channels/{{channel}}'].get['x-required-scope']: missing: every "
        "operation names the scope it requires")


def test_a_scope_the_directory_does_not_list_for_the_service_is_refused(workflows: Path) -> None:
    path = edited(workflows, lambda d: _op(d, "/channels", "post").update(
        {"x-required-scope": "urn:infra:chat:admin"}))
    assert refusal(workflows) == (
        f"{path}: $.paths['/channels'].post['x-required-scope']: unknown scope "
        "'urn:infra:chat:admin': not in directory.yaml services.chat.scopes")


def test_a_scope_of_another_service_is_refused(workflows: Path) -> None:
    path = edited(workflows, lambda d: _op(d, "/channels", "get").update(
        {"x-required-scope": "urn:infra:deploy:create"}))
    assert refusal(workflows) == (
        f"{path}: $.paths['/channels'].get['x-required-scope']: unknown scope "
        "'urn:infra:deploy:create': not in directory.yaml services.chat.scopes")


def test_a_malformed_scope_is_refused(workflows: Path) -> None:
    path = edited(workflows, lambda d: _op(d, "/channels", "get").update(
        {"x-required-scope": "chat:read"}))
    assert refusal(workflows) == (
        f"{path}: $.paths['/channels'].get['x-required-scope']: unknown scope 'chat:read': "
        "not of the form urn:infra:<area>:<verb>")


def test_a_service_the_directory_does_not_list_is_refused(workflows: Path) -> None:
    (workflows / CHAT).rename(workflows / "services/talk.openapi.yaml")
    path = workflows / "services/talk.openapi.yaml"
    assert refusal(workflows) == (
        f"{path}: $.paths['/channels'].post['x-required-scope']: unknown scope "
        "'urn:infra:chat:write': directory.yaml lists no service talk (services.talk.scopes)")


def test_a_duplicate_operation_id_is_refused(workflows: Path) -> None:
    path = edited(workflows, lambda d: _op(d, "/channels/{channel}/messages", "get").update(
        {"operationId": "postMessage"}))
    assert refusal(workflows) == (
        f"{path}: $.paths['/channels/{{channel}}/messages'].get.operationId: duplicate "
        "operationId 'postMessage', also at $.paths['/channels/{channel}/messages'].post"
        ".operationId")


def test_an_operation_without_an_id_is_refused(workflows: Path) -> None:
    path = edited(workflows, lambda d: _op(d, "/channels", "get").pop("operationId"))
    assert refusal(workflows) == (
        f"{path}: $.paths['/channels'].get.operationId: missing: every operation needs an "
        "operationId (workflows name it <service>.<operationId>)")


@pytest.mark.parametrize(("edit", "where"), [
    (lambda d: d.update(openapi="2.0"), "$.openapi: String should match pattern"),
    (lambda d: d.pop("info"), "$.info: Field required"),
    (lambda d: d.update(paths={}), "$.paths: Dictionary should have at least 1 item"),
    (lambda d: _op(d, "/channels", "post").update({"x-audit-action": "two words"}),
     "$.paths['/channels'].post['x-audit-action']: String should match pattern"),
])
def test_a_document_of_the_wrong_shape_names_where(workflows: Path, edit: Edit,
                                                   where: str) -> None:
    path = edited(workflows, edit)
    assert refusal(workflows).startswith(f"{path}: {where}")


def test_a_built_in_name_and_a_name_declared_twice_are_refused(workflows: Path) -> None:
    shutil.copyfile(workflows / CHAT, workflows / "services/chat.openapi.json")
    assert refusal(workflows) == (
        f"{workflows / 'services/chat.openapi.yaml'}: $: service chat is also declared by "
        f"{workflows / 'services/chat.openapi.json'}")
    (workflows / "services/chat.openapi.json").rename(workflows / "services/github.openapi.json")
    assert refusal(workflows) == (
        f"{workflows / 'services/github.openapi.json'}: $: github is a built-in service; name "
        "the file services/<another name>.openapi.yaml")


def test_a_document_that_does_not_parse_is_one_line(workflows: Path) -> None:
    (workflows / CHAT).write_text("openapi: [3.1.0\n")
    assert refusal(workflows).startswith(f"{workflows / CHAT}: $: not valid YAML: ")
    (workflows / CHAT).unlink()
    (workflows / "services/chat.openapi.json").write_text("{\"openapi\": ")
    assert refusal(workflows).startswith(
        f"{workflows / 'services/chat.openapi.json'}: $: not valid JSON: ")


@pytest.mark.parametrize("name", [CHAT, "services/chat.openapi.json"])
def test_a_document_nested_too_deeply_is_one_line(workflows: Path, name: str) -> None:
    text = (workflows / CHAT).read_text()
    (workflows / CHAT).unlink()
    deep = "[" * 5000 + "]" * 5000  # far under the size limit; past the parser's recursion
    if name.endswith(".json"):
        document = yaml.safe_load(text)
        (workflows / name).write_text(json.dumps(document)[:-1] + f', "x-deep": {deep}}}')
    else:
        (workflows / name).write_text(f"{text}\nx-deep: {deep}\n")
    assert refusal(workflows) == f"{workflows / name}: $: not valid " \
        f"{'JSON' if name.endswith('.json') else 'YAML'}: nested too deeply"


def test_a_path_declared_twice_is_refused_not_settled_by_the_last(workflows: Path) -> None:
    text = (workflows / CHAT).read_text()
    first = text.index("\n  /channels/{channel}/messages:")
    block = text[first:text.index("\n  /", first + 1)]  # the path and its operations
    (workflows / CHAT).write_text(text.replace(block, block + block, 1))
    line = text[:first].count("\n") + block.count("\n") + 2
    assert refusal(workflows) == (f"{workflows / CHAT}: $: not valid YAML: found the key "
                                  f"'/channels/{{channel}}/messages' twice (line {line})")


def test_a_json_key_given_twice_is_refused(workflows: Path) -> None:
    document = yaml.safe_load((workflows / CHAT).read_text())
    (workflows / CHAT).unlink()
    text = json.dumps(document)
    (workflows / "services/chat.openapi.json").write_text(
        text.replace('"openapi": ', '"openapi": "3.1.0", "openapi": ', 1))
    assert refusal(workflows) == (f"{workflows / 'services/chat.openapi.json'}: $: not valid "
                                  "JSON: the key 'openapi' twice in one object")


def test_aliases_repeating_too_many_values_are_refused(workflows: Path) -> None:
    nested = "x-nested:\n  l0: &l0 [v, v, v, v, v, v, v, v, v, v]\n" + "".join(
        f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9))
    (workflows / CHAT).write_text((workflows / CHAT).read_text() + nested)
    assert refusal(workflows) == (f"{workflows / CHAT}: $: not valid YAML: its aliases repeat "
                                  "more than 100,000 values")


def test_a_step_naming_an_operation_no_document_declares_is_refused(workflows: Path) -> None:
    announce = workflows / "announce.yaml"
    announce.write_text(announce.read_text().replace("chat.postMessage", "chat.postMesage"))
    with pytest.raises(ConfigError, match="unknown action 'chat.postMesage'"):
        load_workflows(workflows, load_directory(workflows / "directory.yaml"))


def _response_schema(document: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = _op(document, "/channels/{channel}", "get")["responses"]["200"][
        "content"]["application/json"]["schema"]
    return schema


GET_CHANNEL_SCHEMA = "$.paths['/channels/{channel}'].get.responses['200'].content" \
    "['application/json'].schema"


def test_a_ref_to_nothing_in_the_document_is_refused(workflows: Path) -> None:
    path = edited(workflows, lambda d: _response_schema(d).update(
        {"$ref": "#/components/schemas/Chanel"}))
    assert refusal(workflows) == (
        f"{path}: {GET_CHANNEL_SCHEMA}['$ref']: $ref '#/components/schemas/Chanel' names "
        "nothing: $.components.schemas has no 'Chanel'")


@pytest.mark.parametrize("ref", ["common.yaml#/components/schemas/Channel",
                                 "https://example.com/chat.json#/Channel"])
def test_a_ref_outside_the_document_is_refused_not_fetched(workflows: Path, ref: str) -> None:
    path = edited(workflows, lambda d: _response_schema(d).update({"$ref": ref}))
    assert refusal(workflows) == (
        f"{path}: {GET_CHANNEL_SCHEMA}['$ref']: $ref {ref!r} is outside this document: only "
        "references into it ('#/...') are followed, nothing is fetched; copy what it names "
        "into components")


def test_a_ref_that_is_not_a_pointer_is_refused(workflows: Path) -> None:
    path = edited(workflows, lambda d: _response_schema(d).update({"$ref": "#Channel"}))
    assert refusal(workflows) == (
        f"{path}: {GET_CHANNEL_SCHEMA}['$ref']: $ref '#Channel' is not a JSON pointer: a "
        "reference into the document is '#/...'")


def test_what_only_looks_like_a_ref_is_data(workflows: Path) -> None:
    def edit(document: dict[str, Any]) -> None:
        schemas = document["components"]["schemas"]
        schemas["Channel"]["properties"]["$ref"] = {"type": "string"}  # a field named $ref
        schemas["Channel"]["example"] = {"$ref": "not a reference"}
        schemas["Message"]["properties"]["id"] = {"$ref": "#/components/schemas/Channel/"
                                                          "properties/id"}
    edited(workflows, edit)
    [chat] = load_services(workflows, load_directory(workflows / "directory.yaml"))
    assert len(chat.actions) == 6


def _add_route(route: str, op_id: str, method: str = "get") -> Edit:
    def edit(document: dict[str, Any]) -> None:
        document["paths"][route] = {method: {
            "operationId": op_id, "x-required-scope": "urn:infra:chat:read",
            "responses": {"200": {"description": "ok"}}}}
    return edit


def test_a_route_naming_a_parameter_twice_is_refused(workflows: Path) -> None:
    path = edited(workflows, _add_route("/x/{a}/{a}", "dup"))
    assert refusal(workflows) == (
        f"{path}: $.paths['/x/{{a}}/{{a}}']: path parameter {{a}} appears twice")


@pytest.mark.parametrize("method", ["get", "delete"])
def test_routes_differing_only_in_parameter_names_are_refused(workflows: Path,
                                                              method: str) -> None:
    path = edited(workflows, _add_route("/channels/{id}", "readChannel", method))
    assert refusal(workflows) == (
        f"{path}: $.paths['/channels/{{id}}']: the same route as "
        "$.paths['/channels/{channel}'] but for its parameter names, so a request cannot tell "
        "which it calls: declare their operations under one path")


EXAMPLE = "$.paths['/channels'].post.responses['201'].content['application/json'].example"


@pytest.mark.parametrize(("value", "said"), [
    (datetime.date(2024, 1, 1), "2024-01-01 is a YAML date"),
    (datetime.datetime(2024, 1, 1, 10, 30), "2024-01-01 10:30:00 is a YAML timestamp"),
    (float("nan"), "nan is a number JSON cannot hold"),
    (float("-inf"), "-inf is a number JSON cannot hold"),
    (b"\x00", "!!binary is a YAML binary"),
    ({"a"}, "!!set is a YAML set"),
])
def test_a_yaml_value_json_cannot_hold_is_refused(workflows: Path, value: Any,
                                                  said: str) -> None:
    path = edited(workflows, lambda d: _op(d, "/channels", "post")["responses"]["201"][
        "content"]["application/json"]["example"].update(created=[value]))
    assert refusal(workflows) == f"{path}: {EXAMPLE}.created[0]: {said}, not JSON: quote it"


@pytest.mark.parametrize(("key", "said"), [
    (True, "true is a YAML boolean (YAML reads on, off, yes and no so)"),
    (200, "200 is a YAML integer"),
    (datetime.date(2024, 1, 1), "2024-01-01 is a YAML date"),
])
def test_a_yaml_key_that_is_not_a_string_is_refused(workflows: Path, key: Any,
                                                    said: str) -> None:
    path = edited(workflows, lambda d: _op(d, "/channels", "post")["responses"]["201"][
        "content"]["application/json"]["example"].update({key: "x"}))
    assert refusal(workflows) == f"{path}: {EXAMPLE}: the key {said}, not a string: quote it"


def test_an_unquoted_on_key_and_date_in_yaml_text_are_refused(workflows: Path) -> None:
    text = (workflows / CHAT).read_text().replace(
        "example: {is_archived: false, topic: \"\"}", "example: {created: 2024-01-01}")
    (workflows / CHAT).write_text(text)
    assert refusal(workflows) == (
        f"{workflows / CHAT}: {EXAMPLE}.created: 2024-01-01 is a YAML date, not JSON: quote it")
    (workflows / CHAT).write_text(text.replace("{created: 2024-01-01}", "{on: '2024-01-01'}"))
    assert refusal(workflows) == (
        f"{workflows / CHAT}: {EXAMPLE}: the key true is a YAML boolean (YAML reads on, off, "
        "yes and no so), not a string: quote it")


def test_a_json_document_holding_nan_is_refused(workflows: Path) -> None:
    document = yaml.safe_load((workflows / CHAT).read_text())
    _op(document, "/channels", "post")["responses"]["201"]["content"]["application/json"][
        "example"]["score"] = float("nan")
    (workflows / CHAT).unlink()
    target = workflows / "services/chat.openapi.json"
    target.write_text(json.dumps(document))
    assert refusal(workflows) == f"{target}: {EXAMPLE}.score: nan is a number JSON cannot hold" \
        ", not JSON: quote it"


def test_refs_going_round_in_a_circle_are_refused(workflows: Path) -> None:
    def edit(document: dict[str, Any]) -> None:
        document["components"]["schemas"].update({
            "Loop": {"$ref": "#/components/schemas/Back"},
            "Back": {"$ref": "#/components/schemas/Loop", "description": "still a loop"}})
        _response_schema(document).update({"$ref": "#/components/schemas/Loop"})
    path = edited(workflows, edit)
    assert refusal(workflows) == (
        f"{path}: {GET_CHANNEL_SCHEMA}['$ref']: $ref '#/components/schemas/Loop' goes round "
        "in a circle: #/components/schemas/Loop -> #/components/schemas/Back -> "
        "#/components/schemas/Loop")


def test_a_ref_to_what_is_not_an_object_is_refused(workflows: Path) -> None:
    path = edited(workflows, lambda d: _response_schema(d).update({"$ref": "#/info/title"}))
    assert refusal(workflows) == (
        f"{path}: {GET_CHANNEL_SCHEMA}['$ref']: $ref '#/info/title' names $.info.title, which "
        "is not an object")
