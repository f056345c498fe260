"""No 5xx from extreme numbers: a property test over every route of every service. Each
example takes one route's valid request and puts an extreme number (huge, negative, beyond
float range, NaN, thousands of digits) in one of its numeric inputs, in the path, the query or
the JSON body, or shifts all of them by one huge offset (so a range such as ``from``/``to``
stays valid at an extreme magnitude); the answer is never a 5xx, a refusal always carries a
reason, and it is audited."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from _examples import EXAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.catalog import ACTIONS, build_request, get_action

SENTINEL = "__extreme__"
EXTREME_TEXT = ("1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1" * 5000, "-" + "9" * 400,
                "1e-400", "1.7976931348623157e308", "-0", "18446744073709551616",
                "9223372036854775808", "-9223372036854775809", "4294967297", "2147483648")
SHIFTS = (2**31, 2**32, 2**53, 2**63, 2**64, 10**309)
extremes = st.one_of(
    st.sampled_from(EXTREME_TEXT),
    st.integers(min_value=-(2**256), max_value=2**256).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


def _numeric_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [path]
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    return [p for key, item in items for p in _numeric_paths(item, (*path, key))]


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def _put(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _put(value[path[0]], path[1:], new)
    return copy


def _places(name: str) -> list[tuple[str, tuple[Any, ...]]]:
    """Every numeric input of the action's example: ('path'|'query', (name,)) or ('body', p)."""
    action = get_action(name)
    params = EXAMPLES[name]
    _, _, query, body = build_request(name, params)
    places = [("path", (p,)) for p in action.path_params if isinstance(params[p], int)]
    places += [("query", (k,)) for k, v in query.items() if isinstance(v, int)]
    places += [("body", p) for p in _numeric_paths(body)] if body is not None else []
    return places


NUMERIC = [a.name for a in ACTIONS if _places(a.name)]


def test_the_property_covers_every_route_with_a_number():
    assert set(NUMERIC) >= {"datadog.metrics.query", "datadog.event.create",
                            "datadog.event.list", "datadog.monitor.read", "datadog.monitor.mute",
                            "github.pull.read", "github.comment.create",
                            "github.deployment_status.create", "aws.cloudwatch.get_metric_data",
                            "aws.cloudwatch.put_metric_alarm"}


@pytest.mark.parametrize("name", NUMERIC)
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_an_extreme_number_is_never_a_5xx(stack, http, name, data):
    action = get_action(name)
    places = _places(name)
    if data.draw(st.booleans()):
        chosen, shift = [data.draw(st.sampled_from(places))], None
    else:
        chosen, shift = places, data.draw(st.sampled_from(SHIFTS) | st.integers(10**300, 10**400))
    params = dict(EXAMPLES[name])
    _, _, query, body = build_request(name, params)
    texts: dict[str, str] = {}
    for n, (where, path) in enumerate(chosen):
        marker = f"{SENTINEL}{n}"
        original = params[path[0]] if where == "path" else query[path[0]] if where == "query" \
            else _get(body, path)
        texts[marker] = data.draw(extremes) if shift is None else str(int(original) + shift)
        if where == "path":
            params[path[0]] = marker
        elif where == "query":
            query = {**query, path[0]: marker}
        else:
            body = _put(body, path, marker)
    method, url_path, _, _ = build_request(name, params)
    raw = json.dumps(body) if body is not None else None
    for marker, text in texts.items():
        url_path = url_path.replace(marker, quote(text, safe=""))
        query = {k: text if v == marker else v for k, v in query.items()}
        raw = raw.replace(json.dumps(marker), text) if raw is not None else None
    content = raw.encode() if raw is not None else None
    url = stack.urls[action.service] + url_path
    headers = {"Authorization": f"Bearer {stack.token(action.service)}",
               "Content-Type": "application/json"}
    response = http.request(method, url, params=query, content=content, headers=headers)
    assert response.status_code < 500, (name, chosen, response.text)
    if response.status_code >= 400:
        assert response.json()["reason"]
    [record] = stack.records(response)
    assert record.status == response.status_code
