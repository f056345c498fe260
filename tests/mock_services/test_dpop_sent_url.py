"""Over real HTTP with DPoP binding on: a service checks a proof's ``htu`` against the URL the
client sent (its raw path, normalised as the proof's is: RFC 9449 4.3), never against a decoded
path or one a middleware rewrote (AWS's wire forms route ``POST /`` to the operation's path)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from jwt.algorithms import get_default_algorithms

from orchestrator.identity import ath_of, generate_private_key, jkt_of, signing_key_of

Stack = Any
KEY = signing_key_of(generate_private_key("ES256"), "ES256")
DESCRIBE = {"InstanceIds": ["i-0a1b2c3d4e5f60001"]}


@pytest.fixture
def bound_stack(stack_factory: Callable[..., Stack]) -> Stack:
    return stack_factory(dpop_binding=True, services=("aws", "pagerduty", "github"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def proof(htu: str, token: str, method: str) -> str:
    """A proof whose ``htu`` is exactly ``htu`` (no client-side normalisation)."""
    jwk = {k: KEY.public.jwk[k] for k in ("kty", "crv", "x", "y")}
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}
    claims = {"jti": uuid.uuid4().hex, "htm": method, "htu": htu, "iat": int(time.time()),
              "ath": ath_of(token)}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = get_default_algorithms()["ES256"].sign(signing_input.encode(), KEY.private)
    return f"{signing_input}.{_b64(signature)}"


def send(stack: Stack, http: httpx.Client, service: str, method: str, path: str, *,
         htu_path: str | None = None, **kwargs: Any) -> httpx.Response:
    token = stack.token(service, cnf=jkt_of(KEY.public))
    base = stack.urls[service]
    headers = {"Authorization": f"DPoP {token}", **kwargs.pop("headers", {}),
               "DPoP": proof(base + (path if htu_path is None else htu_path), token, method)}
    return http.request(method, httpx.URL(base + path), headers=headers, **kwargs)


def htu_refused(stack: Stack, response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["reason"] == "dpop_htu_mismatch"
    [record] = stack.records(response)
    assert (record.decision, record.reason) == ("deny", "dpop_htu_mismatch")


@pytest.mark.parametrize(("path", "htu_path"), [
    ("/incidents/%507X9K2Q", None),  # the proof names the URL exactly as sent
    ("/incidents/%507X9K2Q", "/incidents/P7X9K2Q"),  # or in another spelling of it
    ("/incidents/P7X9K2Q", "/incidents/%507x9K2Q".replace("x", "X")),
])
def test_a_percent_encoded_path_is_checked_as_sent(bound_stack: Stack, http: httpx.Client,
                                                   path: str, htu_path: str | None) -> None:
    response = send(bound_stack, http, "pagerduty", "GET", path, htu_path=htu_path)
    assert response.status_code == 200, response.text
    assert response.json()["incident"]["id"] == "P7X9K2Q"


def test_a_non_ascii_path_is_checked_as_sent(bound_stack: Stack, http: httpx.Client) -> None:
    response = send(bound_stack, http, "github", "GET", "/repos/%C3%A1cme/service-x/pulls/124")
    assert response.json()["reason"] != "dpop_htu_mismatch", response.text
    assert response.status_code == 403, response.text  # the target check: not acme's repository


@pytest.mark.parametrize("htu_path", ["/incidents%2FP7X9K2Q", "/x/../incidents/P7X9K2Q",
                                      "/incidents/P7X9K2Q/.", "/incidents/P7X9K2R"])
def test_a_proof_for_another_path_is_still_refused(bound_stack: Stack, http: httpx.Client,
                                                   htu_path: str) -> None:
    response = send(bound_stack, http, "pagerduty", "GET", "/incidents/P7X9K2Q",
                    htu_path=htu_path)
    htu_refused(bound_stack, response)


TARGET = {"X-Amz-Target": "AmazonEC2.DescribeInstances",
          "Content-Type": "application/x-amz-json-1.1"}


def test_aws_json_protocol_is_checked_against_the_url_sent(bound_stack: Stack,
                                                           http: httpx.Client) -> None:
    response = send(bound_stack, http, "aws", "POST", "/", json=DESCRIBE, headers=TARGET)
    assert response.status_code == 200, response.text
    never_requested = send(bound_stack, http, "aws", "POST", "/", json=DESCRIBE,
                           headers=TARGET, htu_path="/ec2/DescribeInstances")
    htu_refused(bound_stack, never_requested)


def test_aws_query_form_is_checked_against_the_url_sent(bound_stack: Stack,
                                                        http: httpx.Client) -> None:
    response = send(bound_stack, http, "aws", "POST", "/ec2", json=DESCRIBE,
                    params={"Action": "DescribeInstances"})
    assert response.status_code == 200, response.text
    never_requested = send(bound_stack, http, "aws", "POST", "/ec2", json=DESCRIBE,
                           params={"Action": "DescribeInstances"},
                           htu_path="/ec2/DescribeInstances")
    htu_refused(bound_stack, never_requested)


def test_aws_own_path_is_still_checked_as_before(bound_stack: Stack, http: httpx.Client) -> None:
    response = send(bound_stack, http, "aws", "POST", "/ec2/DescribeInstances", json=DESCRIBE)
    assert response.status_code == 200, response.text
