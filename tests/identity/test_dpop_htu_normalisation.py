"""The ``htu`` comparison (RFC 9449 section 4.3, check 9): the proof's ``htu`` and the request's
URL are compared after RFC 3986 syntax-based normalisation (6.2.2.1 case, 6.2.2.2
percent-encoding) and scheme-based normalisation (6.2.3), on both sides alike. It stays fail
closed: a reserved character's encoding (``%2F``) is not its character, dot segments are never
removed (6.2.2.3 is deliberately not applied: the server routes ``/a/../b`` as sent, so a proof
for ``/b`` must not cover it), and a malformed ``%`` matches nothing."""

from __future__ import annotations

import pytest

from orchestrator.identity import htu_of

from .test_dpop import good_claims, good_header, raw_proof, refused, verify

HOST = "https://svc.example:8443"


@pytest.mark.parametrize(("htu", "request_path"), [
    ("/incidents/%50STG4X1", "/incidents/%50STG4X1"),  # the review's case, exactly as sent
    ("/incidents/%50STG4X1", "/incidents/PSTG4X1"),
    ("/incidents/PSTG4X1", "/incidents/%50STG4X1"),
    ("/repos/%C3%A1cme/x", "/repos/%C3%A1cme/x"),
    ("/repos/%c3%a1cme/x", "/repos/%C3%A1cme/x"),  # hex digits in either case
    ("/repos/\u00e1cme/x", "/repos/%C3%A1cme/x"),  # a raw non-ASCII character: its UTF-8
    ("/a/%7Eb%2dc%5F", "/a/~b-c_"),  # every unreserved character decodes
    ("/a%2Fb", "/a%2fb"),
    ("", "/"),
])
def test_equivalent_spellings_of_the_request_url_match(htu: str, request_path: str) -> None:
    proof = raw_proof(good_header(), good_claims(htu=HOST + htu))
    assert verify(proof, url=HOST + request_path)


@pytest.mark.parametrize(("htu", "request_path"), [
    ("/a%2Fb", "/a/b"),  # a reserved character's encoding is not the character
    ("/b", "/a/../b"),  # dot segments are not removed: another path, maybe another resource
    ("/a/../b", "/b"),
    ("/a/%2E%2E/b", "/b"),
    ("/a/./b", "/a/b"),
    ("/incidents/%50STG4X2", "/incidents/PSTG4X1"),
    ("/a%zz", "/a%zz"),  # a "%" that starts no %XX is no URL: refused even against itself
    ("/a%", "/a%"),
    ("/a%2", "/a%2"),
    ("/\ud800", "/\ud800"),  # a lone surrogate
])
def test_a_different_path_or_a_malformed_one_is_refused(htu: str, request_path: str) -> None:
    proof = raw_proof(good_header(), good_claims(htu=HOST + htu))
    refused(proof, "dpop_htu_mismatch", url=HOST + request_path)


def test_htu_of_is_one_spelling() -> None:
    assert htu_of("HTTPS://Svc.Example:443/incidents/%50STG4X1?x#y") \
        == "https://svc.example/incidents/PSTG4X1"
    assert htu_of("https://a.example/repos/%c3%a1cme/a%2fb") \
        == "https://a.example/repos/%C3%A1cme/a%2Fb"
    assert htu_of("https://a.example/a b/\u00e1") == "https://a.example/a%20b/%C3%A1"
    assert htu_of("https://a.example/a/%2e%2E/b") == "https://a.example/a/../b"
    assert htu_of("https://a.example/a%zz") is None
