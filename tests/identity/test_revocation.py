"""Revocation by token, cascade, run and user, and one-time keys, on both registries.

The Redis variant runs against the real Redis (``@pytest.mark.redis``); an unreachable Redis fails
closed with ``Unavailable``.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from orchestrator.errors import InvalidToken, PredatesMemory, TransientError, Unavailable
from orchestrator.identity import (
    REVOKED_KEPT_PAST_EXPIRY_SECONDS,
    AccessClaims,
    Confirmation,
    MemoryRevocationStore,
    PendingCheck,
    RevocationStore,
    RevocationTarget,
    mint,
    peek_target,
)
from orchestrator.identity import _revocation as revocation_module
from orchestrator.registry import RedisRevocationStore, open_store
from orchestrator.registry import _ahead as ahead_module
from tests._redis import sends_and_verifies

from .conftest import NOW, Authority, make_ctx

NO_RETRY = Retry(NoBackoff(), 0)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    yield client
    client.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, clock: Clock, authority: Authority) -> RevocationStore:
    """A registry, and the authority issuing its root tokens in the registry's epoch."""
    if request.param == "memory":
        return MemoryRevocationStore(clock=clock, epoch=authority.epoch)
    client = request.getfixturevalue("redis_client")
    redis_store = RedisRevocationStore(client, clock=clock)
    authority.epoch = redis_store.standing("user:sam").registry_epoch
    return redis_store


@pytest.fixture
def chain(authority: Authority) -> list[AccessClaims]:
    """Claims of root, hand-off to ArgoCD, hand-off to CleanupAgent, CleanupAgent's AWS token."""
    return [token.claims for token in authority.chain_to_aws()]


def refused(store: RevocationStore, claims: AccessClaims, reason: str) -> None:
    with pytest.raises(InvalidToken) as info:
        store.check(claims)
    assert info.value.code == "invalid_token"
    assert info.value.reason == reason


def revoke(store: RevocationStore, claims: AccessClaims) -> None:
    store.revoke_jti(claims.jti, expires_at=claims.exp)


# --- by token and cascading ----------------------------------------------------------------------

def test_nothing_revoked_passes(store: RevocationStore, chain: list[AccessClaims]) -> None:
    for claims in chain:
        store.check(claims)


def test_revoked_token_is_refused(store: RevocationStore, chain: list[AccessClaims]) -> None:
    revoke(store, chain[-1])
    refused(store, chain[-1], "token_revoked")
    for claims in chain[:-1]:
        store.check(claims)


def test_revoking_the_root_refuses_every_descendant(
        store: RevocationStore, chain: list[AccessClaims]) -> None:
    revoke(store, chain[0])
    refused(store, chain[0], "token_revoked")
    for claims in chain[1:]:
        refused(store, claims, "ancestor_revoked")


def test_revoking_a_middle_hop_refuses_below_it_only(
        store: RevocationStore, chain: list[AccessClaims]) -> None:
    revoke(store, chain[1])
    store.check(chain[0])
    refused(store, chain[1], "token_revoked")
    refused(store, chain[2], "ancestor_revoked")
    refused(store, chain[3], "ancestor_revoked")


def test_revoking_one_branch_leaves_a_sibling_branch(
        store: RevocationStore, authority: Authority) -> None:
    root = authority.root()
    first = authority.exchange(root, "agent:infrabot", audience="agent:argocd")
    second = authority.exchange(root, "agent:infrabot", audience="agent:argocd")
    below_first = authority.exchange(first, "agent:argocd", audience="agent:cleanup")
    revoke(store, first.claims)
    refused(store, below_first.claims, "ancestor_revoked")
    store.check(second.claims)
    store.check(root.claims)


# --- by run --------------------------------------------------------------------------------------

def test_revoking_a_run_refuses_every_token_of_it(
        store: RevocationStore, chain: list[AccessClaims], authority: Authority) -> None:
    other_run = authority.root(ctx=make_ctx(run_id="run-other")).claims
    assert store.revoke_run(chain[0].ctx.run_id) is True
    for claims in chain:
        refused(store, claims, "run_revoked")
    store.check(other_run)
    assert store.revoke_run(chain[0].ctx.run_id) is False  # revoked already: told so


def test_a_run_revoked_until_its_last_token_expires_is_kept_that_long(
        store: RevocationStore, chain: list[AccessClaims], clock: Clock,
        request: pytest.FixtureRequest) -> None:
    run_id = chain[0].ctx.run_id
    assert store.revoke_run(run_id, expires_at=int(NOW) + 900) is True
    refused(store, chain[-1], "run_revoked")
    # a shorter one leaves it as it is
    assert store.revoke_run(run_id, expires_at=int(NOW) + 10) is False
    kept = 900 + REVOKED_KEPT_PAST_EXPIRY_SECONDS
    if isinstance(store, RedisRevocationStore):  # Redis keeps time itself: the key's own ttl
        ttl = request.getfixturevalue("redis_client").ttl
        assert kept - 2 <= ttl(f"infrabot:run:{run_id}") <= kept
        assert store.revoke_run(run_id) is False  # a longer one (a day) extends it
        assert ttl(f"infrabot:run:{run_id}") > 24 * 3600 - 5
        return
    clock.now += kept - 1
    refused(store, chain[-1], "run_revoked")
    clock.now += 1
    store.check(chain[-1])
    assert store.revoke_run(run_id, expires_at=int(clock.now) + 900) is True  # expired: anew
    assert store.revoke_run(run_id) is False  # a longer one (a day) extends it
    clock.now += 24 * 3600 - 1
    refused(store, chain[-1], "run_revoked")


# --- by user -------------------------------------------------------------------------------------

def test_user_version_starts_at_zero(store: RevocationStore) -> None:
    assert store.user_version("user:sam") == 0


def test_revoke_user_bumps_the_version(store: RevocationStore) -> None:
    assert store.revoke_user("user:sam") == 1
    assert store.revoke_user("user:sam") == 2
    assert store.user_version("user:sam") == 2
    assert store.user_version("user:alex") == 0


def test_revoking_a_user_refuses_tokens_of_the_old_version(
        store: RevocationStore, chain: list[AccessClaims], authority: Authority) -> None:
    alex = authority.root("user:alex", ["urn:infra:monitoring:read"]).claims
    version = store.revoke_user("user:sam")
    for claims in chain:
        refused(store, claims, "user_revoked")
    store.check(alex)
    fresh = authority.root(user_version=version).claims
    store.check(fresh)
    store.check(authority.exchange(authority.root(user_version=version), "agent:infrabot",
                                   audience="agent:argocd").claims)


def test_a_token_ahead_of_the_registry_is_refused(
        store: RevocationStore, authority: Authority) -> None:
    refused(store, authority.root(user_version=5).claims, "user_revoked")


def test_token_revocation_is_reported_before_run_and_user(
        store: RevocationStore, chain: list[AccessClaims]) -> None:
    revoke(store, chain[0])
    store.revoke_run(chain[0].ctx.run_id)
    store.revoke_user("user:sam")
    refused(store, chain[0], "token_revoked")
    refused(store, chain[3], "ancestor_revoked")


# --- one-time keys -------------------------------------------------------------------------------

def test_claim_once_succeeds_once_per_key(store: RevocationStore) -> None:
    assert store.claim_once("assertion:abc", ttl=60) is True
    assert store.claim_once("assertion:abc", ttl=60) is False
    assert store.claim_once("assertion:abc", ttl=60) is False
    assert store.claim_once("assertion:def", ttl=60) is True


def test_claim_once_key_expires_after_its_ttl(clock: Clock) -> None:
    store = MemoryRevocationStore(clock=clock)
    assert store.claim_once("webhook:1", ttl=30)
    clock.now += 29
    assert not store.claim_once("webhook:1", ttl=30)
    clock.now += 1
    assert store.claim_once("webhook:1", ttl=30)


# Both registries' memory began at NOW: the memory store's when it was made, Redis's when the
# fixture's first call found it empty (db 15 is flushed before each test).
TOLERANCE = revocation_module.MEMORY_BEGAN_TOLERANCE_SECONDS


def test_a_claim_for_what_was_issued_before_the_memory_began_is_refused(
        store: RevocationStore) -> None:
    """A key claimed before the registry lost its memory is forgotten with it, so a claim for
    an assertion issued before then cannot tell a first use from a replay: it is refused."""
    with pytest.raises(PredatesMemory):
        store.claim_once("assertion:old", ttl=60, issued_at=NOW - TOLERANCE - 1)
    with pytest.raises(PredatesMemory):  # refused again: the refusal claimed nothing
        store.claim_once("assertion:old", ttl=60, issued_at=NOW - TOLERANCE - 1)
    assert store.claim_once("assertion:edge", ttl=60, issued_at=NOW - TOLERANCE) is True
    assert store.claim_once("assertion:new", ttl=60, issued_at=NOW) is True
    assert store.claim_once("assertion:new", ttl=60, issued_at=NOW) is False
    assert store.claim_once("webhook:no-issue-time", ttl=60) is True  # nothing to compare


def test_begin_reports_a_claim_for_what_predates_the_memory(
        store: RevocationStore, chain: list[AccessClaims]) -> None:
    with store.begin(target(chain[-1]), claim=("assertion:old2", 60),
                     issued_at=NOW - TOLERANCE - 1) as pending, pytest.raises(PredatesMemory):
        pending.claimed()
    with store.begin(target(chain[-1]), claim=("assertion:old2", 60), issued_at=NOW) as pending:
        assert pending.claimed() is True  # the refused claim had claimed nothing
        pending.check(chain[-1])


def target(claims: AccessClaims) -> RevocationTarget:
    return RevocationTarget.of(claims)


def test_begin_claims_then_checks(store: RevocationStore, chain: list[AccessClaims]) -> None:
    with store.begin(target(chain[-1]), claim=("assertion:x1", 60)) as pending:
        assert pending.claimed() is True
        pending.check(chain[-1])
    assert store.claim_once("assertion:x1", ttl=60) is False  # the claim is the same claim


def test_begin_reports_a_key_claimed_before(
        store: RevocationStore, chain: list[AccessClaims]) -> None:
    assert store.claim_once("assertion:x2", ttl=60)
    with store.begin(target(chain[-1]), claim=("assertion:x2", 60)) as pending:
        assert pending.claimed() is False


def test_begin_without_a_claim_reports_none_missing(
        store: RevocationStore, chain: list[AccessClaims]) -> None:
    with store.begin(target(chain[-1])) as pending:
        assert pending.claimed() is True
        pending.check(chain[-1])


@pytest.mark.parametrize("what", ["jti", "ancestor", "run", "user"])
def test_begin_refuses_what_check_refuses_and_the_claim_stands(
        store: RevocationStore, chain: list[AccessClaims], what: str) -> None:
    token = chain[-1]
    if what == "jti":
        revoke(store, token)
    elif what == "ancestor":
        revoke(store, chain[1])
    elif what == "run":
        store.revoke_run(token.ctx.run_id)
    else:
        store.revoke_user(token.sub)
    reason = {"jti": "token_revoked", "ancestor": "ancestor_revoked", "run": "run_revoked",
              "user": "user_revoked"}[what]
    with store.begin(target(token), claim=("assertion:x3", 60)) as pending:
        assert pending.claimed()
        with pytest.raises(InvalidToken) as info:
            pending.check(token)
    assert info.value.reason == reason
    assert store.claim_once("assertion:x3", ttl=60) is False


def test_an_answer_is_never_applied_to_claims_naming_something_else(
        store: RevocationStore, chain: list[AccessClaims]) -> None:
    """Asked about one token, checked with another: the other is checked afresh."""
    revoke(store, chain[0])
    with store.begin(target(chain[0])) as pending:  # the revoked root, as its payload says
        pending.check(chain[0].model_copy(update={"jti": "another-jti-0001"}))  # not revoked
    other = RevocationTarget("unrevoked-jti-01", (), "run-0001", "user:sam", None)
    with store.begin(other) as pending:
        refused_by(pending, chain[0], "token_revoked")


def test_begin_with_no_target_only_claims(store: RevocationStore,
                                          chain: list[AccessClaims]) -> None:
    revoke(store, chain[-1])
    with store.begin(None, claim=("assertion:x4", 60)) as pending:
        assert pending.claimed()
        refused_by(pending, chain[-1], "token_revoked")  # checked by a round trip of its own


def refused_by(pending: PendingCheck, claims: AccessClaims, reason: str) -> None:
    with pytest.raises(InvalidToken) as info:
        pending.check(claims)
    assert info.value.reason == reason


# --- reading a token's revocation target before verifying it -------------------------------------

def test_peek_target_reads_what_the_verified_claims_say(authority: Authority) -> None:
    for token in authority.chain_to_aws():
        raw = mint(token.claims, authority.key)
        assert peek_target(raw, max_bytes=8192) == RevocationTarget.of(token.claims)


@pytest.mark.parametrize("token", [
    None, "", "not.a.token", "a.b", "a.b.c.d", "eyJ.!!!.x",
    "eyJhbGciOiJFUzI1NiJ9.W10.sig",  # payload is a list
    "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJ4In0.sig",  # no ctx
])
def test_peek_target_refuses_what_is_not_one_of_our_tokens(token: object) -> None:
    assert peek_target(token, max_bytes=8192) is None


@pytest.mark.parametrize("payload", [
    {"jti": 1, "sub": "user:sam", "ctx": {"run_id": "r"}},
    {"jti": "j", "sub": "user:sam", "ctx": {"run_id": ["r"]}},
    {"jti": "j", "sub": None, "ctx": {"run_id": "r"}},
    {"jti": "j" * 257, "sub": "user:sam", "ctx": {"run_id": "r"}},
    {"jti": "j", "sub": "user:sam", "ctx": {"run_id": "r"}, "ancestors": "a"},
    {"jti": "j", "sub": "user:sam", "ctx": {"run_id": "r"}, "ancestors": [1]},
    {"jti": "j", "sub": "user:sam", "ctx": {"run_id": "r"}, "ancestors": ["a"] * 17},
    # names no valid token could carry (the registry's client could not even encode the first)
    {"jti": "\ud800abcdefgh", "sub": "user:sam", "ctx": {"run_id": "run-0001"}},
    {"jti": "short", "sub": "user:sam", "ctx": {"run_id": "run-0001"}},
    {"jti": "jti-00000001", "sub": "sam", "ctx": {"run_id": "run-0001"}},
    {"jti": "jti-00000001", "sub": "user:sam", "ctx": {"run_id": "run 0001"}},
    {"jti": "jti-00000001", "sub": "user:sam", "ctx": {"run_id": "run-0001"},
     "ancestors": ["jti-00000000", "no spaces please"]},
])
def test_peek_target_refuses_payloads_of_the_wrong_shape(payload: dict[str, object]) -> None:
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    assert peek_target(f"eyJhbGciOiJFUzI1NiJ9.{body}.c2ln", max_bytes=8192) is None


def test_peek_target_takes_a_well_formed_payload() -> None:
    payload = {"jti": "jti-00000001", "sub": "user:sam", "ctx": {"run_id": "run-0001"},
               "ancestors": ["jti-00000000"]}
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    assert peek_target(f"eyJhbGciOiJFUzI1NiJ9.{body}.c2ln", max_bytes=8192) == RevocationTarget(
        "jti-00000001", ("jti-00000000",), "run-0001", "user:sam", None)


def test_peek_target_refuses_a_token_over_the_size_limit(authority: Authority) -> None:
    raw = mint(authority.chain_to_aws()[-1].claims, authority.key)
    assert peek_target(raw, max_bytes=len(raw)) is not None
    assert peek_target(raw, max_bytes=len(raw) - 1) is None


def test_ping(store: RevocationStore) -> None:
    store.ping()


# --- by the DPoP key a token is bound to ----------------------------------------------------------

KEY_A, KEY_B = "A" * 43, "B" * 43


def bound_to(claims: AccessClaims, jkt: str) -> AccessClaims:
    return claims.model_copy(update={"cnf": Confirmation(jkt=jkt)})


def test_revoking_a_dpop_key_refuses_the_tokens_bound_to_it_only(
        store: RevocationStore, chain: list[AccessClaims]) -> None:
    on_a, on_b = bound_to(chain[-1], KEY_A), bound_to(chain[1], KEY_B)
    store.revoke_key(KEY_A, expires_at=int(NOW) + 900)
    refused(store, on_a, "bound_key_revoked")
    store.check(on_b)  # another key's token
    for claims in chain:  # unbound tokens name no key
        store.check(claims)


def test_a_revoked_token_is_reported_before_its_revoked_key(
        store: RevocationStore, chain: list[AccessClaims]) -> None:
    token = bound_to(chain[-1], KEY_A)
    store.revoke_key(KEY_A, expires_at=int(NOW) + 900)
    revoke(store, token)
    refused(store, token, "token_revoked")


def test_begin_refuses_a_token_bound_to_a_revoked_key(
        store: RevocationStore, chain: list[AccessClaims]) -> None:
    token = bound_to(chain[-1], KEY_A)
    store.revoke_key(KEY_A, expires_at=int(NOW) + 900)
    with store.begin(target(token), claim=("assertion:x5", 60)) as pending:
        assert pending.claimed()
        refused_by(pending, token, "bound_key_revoked")


def test_an_answer_about_one_key_is_never_applied_to_a_token_bound_to_another(
        store: RevocationStore, chain: list[AccessClaims]) -> None:
    """The payload said key B (not revoked); the verified claims say key A: asked afresh."""
    store.revoke_key(KEY_A, expires_at=int(NOW) + 900)
    with store.begin(target(bound_to(chain[-1], KEY_B))) as pending:
        refused_by(pending, bound_to(chain[-1], KEY_A), "bound_key_revoked")


def test_a_revoked_key_is_forgotten_once_no_token_bound_to_it_can_live(
        clock: Clock, authority: Authority, chain: list[AccessClaims]) -> None:
    """Not at the expiry it was revoked with: a verifier still takes a token for its leeway
    past ``exp``."""
    store = MemoryRevocationStore(clock=clock, epoch=authority.epoch)
    token = bound_to(chain[-1], KEY_A)
    store.revoke_key(KEY_A, expires_at=int(NOW) + 900)
    clock.now = NOW + 900 + REVOKED_KEPT_PAST_EXPIRY_SECONDS - 1
    refused(store, token, "bound_key_revoked")
    clock.now = NOW + 900 + REVOKED_KEPT_PAST_EXPIRY_SECONDS + 1
    store.check(token)


def test_peek_target_reads_the_bound_key() -> None:
    payload = {"jti": "jti-00000001", "sub": "user:sam", "ctx": {"run_id": "run-0001"},
               "cnf": {"jkt": KEY_A}}
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    assert peek_target(f"eyJhbGciOiJFUzI1NiJ9.{body}.c2ln", max_bytes=8192) == RevocationTarget(
        "jti-00000001", (), "run-0001", "user:sam", KEY_A)


@pytest.mark.parametrize("cnf", [KEY_A, [KEY_A], {}, {"jkt": None}, {"jkt": "short"},
                                 {"jkt": KEY_A + "="}, {"x5t#S256": KEY_A}])
def test_peek_target_refuses_a_malformed_cnf(cnf: object) -> None:
    """A cnf no token of ours could carry: the check waits for the verified claims."""
    payload = {"jti": "jti-00000001", "sub": "user:sam", "ctx": {"run_id": "run-0001"},
               "cnf": cnf}
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    assert peek_target(f"eyJhbGciOiJFUzI1NiJ9.{body}.c2ln", max_bytes=8192) is None


# --- Redis specifics -----------------------------------------------------------------------------

@pytest.mark.redis
def test_redis_keys_expire_with_what_they_refer_to(
        redis_client: redis.Redis, clock: Clock, chain: list[AccessClaims]) -> None:
    store = RedisRevocationStore(redis_client, clock=clock)
    revoke(store, chain[-1])
    store.revoke_run("run-0001")
    assert store.claim_once("assertion:abc", ttl=30)
    jti_ttl = redis_client.ttl(f"infrabot:jti:{chain[-1].jti}")
    assert 0 < jti_ttl <= chain[-1].exp - NOW + 60
    assert 0 < redis_client.ttl("infrabot:run:run-0001") <= 24 * 3600
    store.revoke_key(KEY_A, expires_at=int(NOW) + 900)
    assert 900 < redis_client.ttl(f"infrabot:jkt:{KEY_A}") <= 900 + 60
    assert 0 < redis_client.ttl("infrabot:once:assertion:abc") <= 30
    assert store.claim_once("assertion:def", ttl=30, issued_at=NOW)  # the claim script
    assert 0 < redis_client.ttl("infrabot:once:assertion:def") <= 30


@pytest.mark.redis
def test_the_registry_reads_redis_replies_with_hiredis(redis_url: str) -> None:
    """``redis[hiredis]`` is a dependency: redis-py's pure-Python reply parser was a visible part
    of every revocation check and of every broker call (bench/RESULTS.md, 2026-11-29)."""
    from redis._parsers import _HiredisParser

    store = RedisRevocationStore.from_url(redis_url)
    try:
        store.ping()
        pool = store._r.connection_pool  # type: ignore[attr-defined]
        connection = pool.get_connection()
        try:
            assert isinstance(connection._parser, _HiredisParser)
        finally:
            pool.release(connection)
        ahead = store._ahead.take()  # the connections checks sent ahead use: the pool's
        assert isinstance(ahead._parser, _HiredisParser)
        store._ahead.keep(ahead)
    finally:
        store.close()


@pytest.fixture
def on_redis(redis_client: redis.Redis, clock: Clock,
             authority: Authority) -> tuple[RedisRevocationStore, list[AccessClaims]]:
    """A Redis registry, and the post-deploy chain issued in its epoch."""
    store = RedisRevocationStore(redis_client, clock=clock)
    return store, chain_in(authority, store)


@pytest.mark.redis
def test_a_claim_and_a_check_are_one_redis_round_trip(
        on_redis: tuple[RedisRevocationStore, list[AccessClaims]], redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store, chain = on_redis
    with store.begin(target(chain[-1])):  # the store's connection opened (its handshake) once
        pass
    events = sends_and_verifies(monkeypatch, redis_client.connection_pool.connection_class)
    with store.begin(target(chain[-1]), claim=("assertion:rt", 60)) as pending:
        assert pending.claimed()
        pending.check(chain[-1])
    assert events == ["send"]  # SET NX and MGET written together, both answers read after


@pytest.mark.redis
def test_an_answer_read_too_long_after_its_query_is_asked_again(
        on_redis: tuple[RedisRevocationStore, list[AccessClaims]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Verifying may wait on a key fetch: an answer older than the bound decides nothing."""
    store, chain = on_redis
    with store.begin(target(chain[-1])) as pending:
        assert pending.claimed()  # the answer, "not revoked", is read
        revoke(store, chain[-1])
        monkeypatch.setattr(ahead_module, "IN_FLIGHT_MAX_AGE_SECONDS", 0.0)
        refused_by(pending, chain[-1], "token_revoked")


@pytest.mark.redis
def test_an_answer_within_the_bound_is_used_as_read(
        on_redis: tuple[RedisRevocationStore, list[AccessClaims]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The check is ordered where its query reached the registry: a revocation that lands
    while a fresh answer is in flight applies from the next request on."""
    store, chain = on_redis
    monkeypatch.setattr(ahead_module, "IN_FLIGHT_MAX_AGE_SECONDS", 60.0)
    with store.begin(target(chain[-1])) as pending:
        assert pending.claimed()
        revoke(store, chain[-1])
        pending.check(chain[-1])
    refused(store, chain[-1], "token_revoked")


@pytest.mark.redis
@pytest.mark.parametrize("fault", [redis.ResponseError("ERR handshake"), redis.ConnectionError()])
def test_a_send_that_fails_is_unavailable_and_keeps_no_broken_connection(
        on_redis: tuple[RedisRevocationStore, list[AccessClaims]], redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch, fault: Exception) -> None:
    """A fault this test cannot cause in a live Redis, injected: an error answer while sending,
    and a connection lost on both tries."""
    store, chain = on_redis
    with store.begin(target(chain[-1])):  # a connection the store keeps
        pass
    [kept] = store._ahead._kept
    pool = redis_client.connection_pool

    def fail(*_: object, **__: object) -> None:
        raise fault

    monkeypatch.setattr(pool.connection_class, "send_packed_command", fail)
    with pytest.raises(Unavailable) as info:
        store.begin(target(chain[-1]), claim=("assertion:sendfault", 60))
    assert info.value.reason == "revocation_unavailable"
    monkeypatch.undo()
    assert store._ahead._kept == []  # the connection that failed is not kept...
    assert kept in pool._available_connections  # type: ignore[attr-defined]  # ...but pooled
    assert not kept.is_connected  # closed
    assert store.claim_once("assertion:sendfault", ttl=60)  # never sent, so never claimed
    with store.begin(target(chain[-1])) as pending:  # a new connection serves the next check
        pending.check(chain[-1])


@pytest.mark.redis
def test_checks_sent_ahead_reuse_one_connection_and_survive_its_loss(
        on_redis: tuple[RedisRevocationStore, list[AccessClaims]],
        redis_client: redis.Redis) -> None:
    """One connection serves check after check; one that Redis closed meanwhile (as a restart
    does) is reopened before it is used, not answered as an unreachable registry."""
    store, chain = on_redis
    for _ in range(3):
        with store.begin(target(chain[-1])) as pending:
            pending.check(chain[-1])
    assert len(store._ahead._kept) == 1
    kept = store._ahead._kept[0]
    redis_client.client_kill_filter(_type="normal", skipme=True)  # every connection but this
    revoke(store, chain[-1])
    with store.begin(target(chain[-1])) as pending:
        refused_by(pending, chain[-1], "token_revoked")
    assert store._ahead._kept == [kept]


@pytest.mark.redis
def test_after_a_fork_the_parents_connections_are_not_used(
        on_redis: tuple[RedisRevocationStore, list[AccessClaims]]) -> None:
    store, chain = on_redis
    with store.begin(target(chain[-1])):
        pass
    parents = list(store._ahead._kept)
    ahead_module._after_fork_in_child()  # what os.fork runs in the child
    assert store._ahead._kept == []
    with store.begin(target(chain[-1])) as pending:
        pending.check(chain[-1])
    assert store._ahead._kept and store._ahead._kept[0] not in parents


@pytest.mark.redis
def test_a_check_that_ends_after_the_store_closed_keeps_no_connection(
        on_redis: tuple[RedisRevocationStore, list[AccessClaims]],
        redis_client: redis.Redis) -> None:
    store, chain = on_redis
    pending = store.begin(target(chain[-1]))
    store._ahead.close()
    pending.check(chain[-1])  # its answer is read, and its connection goes back to the pool
    assert store._ahead._kept == []
    assert not redis_client.connection_pool._in_use_connections  # type: ignore[attr-defined]


@pytest.mark.redis
def test_leaving_a_pending_check_unread_leaves_the_connection_clean(
        redis_client: redis.Redis, clock: Clock, chain: list[AccessClaims]) -> None:
    store = RedisRevocationStore(redis_client, clock=clock)
    store.revoke_user("user:pat")
    for _ in range(3):
        with store.begin(target(chain[-1]), claim=("assertion:unread", 60)):
            pass  # a caller that left early (its token was refused)
    assert store.user_version("user:pat") == 1  # not a stale MGET answer read as this one


def test_begin_on_an_unreachable_registry_is_unavailable(clock: Clock,
                                                        chain: list[AccessClaims]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5,
                         socket_connect_timeout=0.5, retry=NO_RETRY)
    store = RedisRevocationStore(client, clock=clock)
    with pytest.raises(Unavailable) as info:
        store.begin(target(chain[-1]), claim=("assertion:down", 60))
    assert info.value.reason == "revocation_unavailable"


def _hang_up_on_mget(server: socket.socket) -> None:
    """A Redis stand-in: answers ``+OK`` to each command (the client's handshake) until one
    carries an MGET, then hangs up without a word."""
    conn, _ = server.accept()
    with conn:
        while data := conn.recv(65536):
            if b"MGET" in data:
                return
            commands = sum(line.startswith(b"*") for line in data.split(b"\r\n"))
            conn.sendall(b"+OK\r\n" * commands)


def test_a_registry_that_hangs_up_before_answering_is_unavailable(
        clock: Clock, chain: list[AccessClaims]) -> None:
    """The query was sent, the answer never came: refused, and the claim is not assumed."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        stand_in = threading.Thread(target=_hang_up_on_mget, args=(server,), daemon=True)
        stand_in.start()
        client = redis.Redis(host="127.0.0.1", port=server.getsockname()[1],
                             socket_timeout=2.0, socket_connect_timeout=2.0, retry=NO_RETRY,
                             protocol=2)
        store = RedisRevocationStore(client, clock=clock)
        pending = store.begin(target(chain[-1]), claim=("assertion:hangup", 60))
        with pending, pytest.raises(Unavailable) as info:
            pending.claimed()
        assert info.value.reason == "revocation_unavailable"
        with pytest.raises(Unavailable):  # read once, and failed: never read as a success later
            pending.check(chain[-1])
        stand_in.join(timeout=5)
        client.close()


def chain_in(authority: Authority, store: RevocationStore) -> list[AccessClaims]:
    """:func:`chain`, issued in ``store``'s current epoch."""
    authority.epoch = store.standing("user:sam").registry_epoch
    return [token.claims for token in authority.chain_to_aws()]


@pytest.fixture
def two_sides(redis_client: redis.Redis, clock: Clock) -> tuple[RedisRevocationStore, ...]:
    """The issuer's and a service's store over one Redis."""
    return tuple(RedisRevocationStore(redis_client, clock=clock) for _ in range(2))


@pytest.mark.redis
def test_redis_revocation_is_shared_between_stores(
        two_sides: tuple[RedisRevocationStore, ...], authority: Authority) -> None:
    issuer_side, service_side = two_sides
    chain = chain_in(authority, issuer_side)
    service_side.check(chain[-1])
    revoke(issuer_side, chain[0])
    refused(service_side, chain[-1], "ancestor_revoked")
    assert issuer_side.claim_once("k", ttl=10)
    assert not service_side.claim_once("k", ttl=10)


# --- the registry's epoch: a registry that lost its memory answers for no earlier token ----------

def test_a_token_of_another_epoch_is_refused_before_anything_else(
        store: RevocationStore, authority: Authority) -> None:
    chain = [t.claims for t in authority.chain_to_aws()]
    authority.epoch = "epoch-before-0001"
    stale = authority.root(user_version=7).claims  # also ahead of the user's version
    store.revoke_jti(stale.jti, expires_at=stale.exp)
    refused(store, stale, "registry_reset")
    for claims in chain:
        store.check(claims)


def test_epochs_are_random_per_memory_store(authority: Authority) -> None:
    first, second = MemoryRevocationStore(), MemoryRevocationStore()
    assert first.epoch != second.epoch
    assert len(first.epoch) >= 16
    assert first.standing("user:sam") == (first.epoch, 0)
    authority.epoch = first.epoch
    token = authority.root().claims
    first.check(token)
    refused(second, token, "registry_reset")  # a new process: its memory starts empty


@pytest.mark.redis
def test_a_redis_registry_that_lost_its_keys_refuses_every_earlier_token(
        redis_client: redis.Redis, two_sides: tuple[RedisRevocationStore, ...],
        authority: Authority) -> None:
    """The reliability suite restarts a real unpersisted redis-server; here FLUSHDB stands in."""
    issuer_side, service_side = two_sides
    chain = chain_in(authority, issuer_side)
    before = redis_client.get("infrabot:epoch")
    assert before is not None and before.decode() == chain[0].registry_epoch
    revoke(issuer_side, chain[0])
    refused(service_side, chain[-1], "ancestor_revoked")
    redis_client.flushdb()  # the revocation is forgotten
    for claims in chain:
        refused(service_side, claims, "registry_reset")
    after = redis_client.get("infrabot:epoch")
    assert after is not None and after != before
    fresh = chain_in(authority, issuer_side)  # tokens issued since are answered for
    assert fresh[0].registry_epoch == after.decode()
    for claims in fresh:
        service_side.check(claims)
        issuer_side.check(claims)


@pytest.mark.redis
def test_a_redis_registry_that_lost_its_keys_refuses_claims_issued_before(
        redis_client: redis.Redis, two_sides: tuple[RedisRevocationStore, ...],
        clock: Clock) -> None:
    """A claimed assertion is forgotten with the keys; it is not taken as a first use after."""
    issuer_side, service_side = two_sides
    assert issuer_side.claim_once("assertion:a", ttl=60, issued_at=int(NOW))
    redis_client.flushdb()  # the claim is forgotten
    clock.now += 5  # the memory begins again when a store next finds it empty
    with pytest.raises(PredatesMemory):
        service_side.claim_once("assertion:a", ttl=60, issued_at=int(NOW))
    assert redis_client.get("infrabot:memory_began") == str(int(NOW) + 5).encode()
    assert redis_client.ttl("infrabot:memory_began") == -1  # lives as long as Redis's memory
    assert issuer_side.claim_once("assertion:b", ttl=60, issued_at=int(clock.now))
    clock.now += 5  # a store naming the new epoch later keeps the time the claim wrote
    issuer_side.standing("user:sam")
    assert redis_client.get("infrabot:memory_began") == str(int(NOW) + 5).encode()


@pytest.mark.redis
def test_a_malformed_memory_began_is_taken_as_now(
        redis_client: redis.Redis, clock: Clock) -> None:
    """A value no store writes is replaced by the time now: later, so it refuses more, never
    less."""
    store = RedisRevocationStore(redis_client, clock=clock)
    redis_client.set("infrabot:memory_began", "not-a-time")
    with pytest.raises(PredatesMemory):
        store.claim_once("assertion:c", ttl=60, issued_at=int(NOW) - TOLERANCE - 1)
    assert redis_client.get("infrabot:memory_began") == str(int(NOW)).encode()


@pytest.mark.redis
def test_the_first_store_to_find_no_epoch_names_it_for_all(
        redis_client: redis.Redis, clock: Clock) -> None:
    stores = [RedisRevocationStore(redis_client, clock=clock) for _ in range(3)]
    epochs = {s.standing("user:sam").registry_epoch for s in stores}
    assert len(epochs) == 1
    assert redis_client.get("infrabot:epoch") == epochs.pop().encode()
    assert redis_client.ttl("infrabot:epoch") == -1  # lives as long as Redis's memory
    assert redis_client.get("infrabot:memory_began") == str(int(NOW)).encode()


class StaleEpochRead:
    """A Redis client whose first MGET answers as if read just before another store named the
    epoch: the epoch comes back missing although it is set."""

    def __init__(self, client: redis.Redis) -> None:
        self._client, self._stale = client, True

    def mget(self, keys: list[str]) -> list[object]:
        values = self._client.mget(keys)
        if self._stale:
            self._stale = False
            return [None if k == "infrabot:epoch" else v for k, v in zip(keys, values, strict=True)]
        return values

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)


@pytest.mark.redis
def test_a_store_that_lost_the_race_to_name_the_epoch_takes_the_winners(
        redis_client: redis.Redis, clock: Clock, authority: Authority) -> None:
    winner = RedisRevocationStore(redis_client, clock=clock)
    named = winner.standing("user:sam").registry_epoch
    late = RedisRevocationStore(StaleEpochRead(redis_client), clock=clock)  # type: ignore[arg-type]
    assert late.standing("user:sam").registry_epoch == named
    assert redis_client.get("infrabot:epoch") == named.encode()
    authority.epoch = named
    winner.check(authority.root().claims)


class EpochVanishes:
    """Redis restarting again under the store: the epoch is missing, cannot be set, and is
    still missing when read back."""

    def mget(self, keys: list[str]) -> list[object]:
        return [None] * len(keys)

    def set(self, *args: object, **kwargs: object) -> object:
        return None

    def get(self, name: str) -> object:
        return None


@pytest.mark.parametrize("call", [lambda s, c: s.check(c), lambda s, c: s.standing(c.sub)],
                         ids=["check", "standing"])
def test_an_epoch_that_cannot_be_named_is_unavailable(
        chain: list[AccessClaims], call: Callable[[RedisRevocationStore, AccessClaims], object]
) -> None:
    store = RedisRevocationStore(EpochVanishes())  # type: ignore[arg-type]
    with pytest.raises(Unavailable) as info:
        call(store, chain[-1])
    assert (info.value.reason, info.value.status) == ("revocation_unavailable", 503)


@pytest.mark.redis
@pytest.mark.parametrize("stored", [b"short", b"not an epoch at all!", b"\xff\xfe" * 8,
                                    b"epoch-with-newline\n"])
def test_a_malformed_epoch_in_redis_is_a_registry_fault_not_an_answer(
        redis_client: redis.Redis, clock: Clock, chain: list[AccessClaims], stored: bytes) -> None:
    redis_client.set("infrabot:epoch", stored)
    store = RedisRevocationStore(redis_client, clock=clock)
    for call in (lambda: store.check(chain[-1]), lambda: store.standing("user:sam")):
        with pytest.raises(Unavailable) as info:
            call()
        assert info.value.reason == "revocation_unavailable"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unreachable() -> RedisRevocationStore:
    return RedisRevocationStore.from_url(f"redis://127.0.0.1:{closed_port()}/15")


UNREACHABLE_CALLS: dict[str, Callable[[RedisRevocationStore, AccessClaims], object]] = {
    "check": lambda s, c: s.check(c),
    "revoke_jti": lambda s, c: s.revoke_jti(c.jti, expires_at=c.exp),
    "revoke_user": lambda s, c: s.revoke_user(c.sub),
    "revoke_run": lambda s, c: s.revoke_run(c.ctx.run_id),
    "user_version": lambda s, c: s.user_version(c.sub),
    "standing": lambda s, c: s.standing(c.sub),
    "claim_once": lambda s, c: s.claim_once("k", ttl=10),
    "claim_once dated": lambda s, c: s.claim_once("k", ttl=10, issued_at=c.iat),
    "ping": lambda s, c: s.ping(),
}


@pytest.mark.parametrize("call", UNREACHABLE_CALLS.values(), ids=UNREACHABLE_CALLS.keys())
def test_unreachable_redis_fails_closed(
        unreachable: RedisRevocationStore, chain: list[AccessClaims],
        call: Callable[[RedisRevocationStore, AccessClaims], object]) -> None:
    with pytest.raises(Unavailable) as info:
        call(unreachable, chain[-1])
    assert isinstance(info.value, TransientError)
    assert info.value.reason == "revocation_unavailable"
    assert info.value.status == 503
    assert info.value.body()["error"] == "temporarily_unavailable"


def test_open_store_without_url_is_in_process() -> None:
    assert isinstance(open_store(None), MemoryRevocationStore)
    assert isinstance(open_store(""), MemoryRevocationStore)


def test_open_store_with_url_is_redis() -> None:
    assert isinstance(open_store(f"redis://127.0.0.1:{closed_port()}/15"), RedisRevocationStore)
