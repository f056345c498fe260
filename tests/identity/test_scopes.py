"""URN scopes: parse, format, narrow, and the reference article's filterScopes."""

from __future__ import annotations

import pytest

from orchestrator.errors import InvalidScope
from orchestrator.identity import filter_scopes, format_scopes, is_write, narrow, parse_scopes

READ = "urn:infra:monitoring:read"
COMMENT = "urn:infra:deploy:comment"
CREATE = "urn:infra:deploy:create"
SECRETS = "urn:infra:secrets:manage"


def test_parse_returns_the_set_of_scopes() -> None:
    assert parse_scopes(f"{READ} {COMMENT}") == frozenset({READ, COMMENT})


def test_parse_collapses_duplicates() -> None:
    assert parse_scopes(f"{READ} {READ}") == frozenset({READ})


def test_parse_accepts_sixty_four_scopes() -> None:
    scopes = [f"urn:infra:area{i}:read" for i in range(64)]
    assert len(parse_scopes(" ".join(scopes))) == 64


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "monitoring:read",
        "urn:infra:monitoring",
        "urn:infra:monitoring:read:extra",
        "urn:other:monitoring:read",
        "URN:INFRA:MONITORING:READ",
        "urn:infra:Monitoring:read",
        "urn:infra:1monitoring:read",
        "urn:infra::read",
        f"urn:infra:{'a' * 33}:read",
        f"{READ}  {COMMENT}",
        f" {READ}",
        f"{READ} ",
        f"{READ}\t{COMMENT}",
        f"{READ},{COMMENT}",
        f"{READ}\n",
        "urn:infra:monitoring:réad",
        " ".join(f"urn:infra:area{i}:read" for i in range(65)),
    ],
    ids=repr,
)
def test_malformed_scope_strings_are_invalid_scope(value: str) -> None:
    with pytest.raises(InvalidScope) as info:
        parse_scopes(value)
    assert info.value.code == "invalid_scope"
    assert info.value.reason == "malformed_scope"


@pytest.mark.parametrize("value", [None, 42, [READ], b"urn:infra:monitoring:read"])
def test_non_string_scope_is_invalid_scope(value: object) -> None:
    with pytest.raises(InvalidScope) as info:
        parse_scopes(value)  # type: ignore[arg-type]
    assert info.value.reason == "malformed_scope"


def test_error_message_does_not_echo_an_unbounded_value() -> None:
    with pytest.raises(InvalidScope) as info:
        parse_scopes("x" * 5000)
    assert len(info.value.message) < 200


def test_format_is_sorted_and_deduplicated() -> None:
    assert format_scopes([READ, COMMENT, READ]) == f"{COMMENT} {READ}"


def test_format_then_parse_round_trips() -> None:
    scopes = frozenset({READ, COMMENT, CREATE})
    assert parse_scopes(format_scopes(scopes)) == scopes


def test_narrow_is_the_intersection_of_every_set() -> None:
    assert narrow([READ, COMMENT, CREATE], [READ, CREATE], {CREATE, READ, SECRETS}) == {
        READ, CREATE}


def test_narrow_of_one_set_is_that_set() -> None:
    assert narrow([READ, COMMENT]) == frozenset({READ, COMMENT})


def test_narrow_with_a_disjoint_set_is_empty() -> None:
    assert narrow([READ], [COMMENT]) == frozenset()


def test_filter_scopes_reference_article_example() -> None:
    # Sam's permissions and what the agent needs, from the reference article, in urn:infra form.
    user_permissions = [READ, CREATE, SECRETS]
    required_scopes = [READ, COMMENT]
    assert filter_scopes(user_permissions, required_scopes) == [READ]


def test_filter_scopes_keeps_required_order_and_drops_duplicates() -> None:
    assert filter_scopes([READ, COMMENT, CREATE], [CREATE, READ, CREATE]) == [CREATE, READ]


def test_filter_scopes_never_adds_what_was_not_required() -> None:
    assert filter_scopes([READ, SECRETS], []) == []


@pytest.mark.parametrize(
    ("scope", "write"),
    [
        (READ, False),
        ("urn:infra:incident:list", False),
        ("urn:infra:repo:get", False),
        (COMMENT, True),
        (CREATE, True),
        ("urn:infra:infrastructure:clean", True),
        (SECRETS, True),
    ],
)
def test_is_write_counts_every_non_read_verb(scope: str, write: bool) -> None:
    assert is_write(scope) is write
