"""Each vendor's documented token layout, mapped by its profile, and every refusal with its exact
reason. Keys come from each stand-in provider's real discovery and JWKS endpoints (loopback)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from orchestrator.config import Settings
from orchestrator.errors import InvalidGrant, InvalidToken, Unavailable
from orchestrator.federation import ProviderKeys, UserTokens
from orchestrator.identity import Directory, FederatedIdentity, federated_holder
from tests.federation._idp import (
    HEADERS,
    SAM_OID,
    IdPServer,
    Key,
    auth0_claims,
    ec_key,
    entra_claims,
    keycloak_claims,
    okta_claims,
    rsa_key,
)
from tests.federation.conftest import DEPLOYER, directory_with
from tests.identity._twins import twin

VENDORS = ("keycloak", "auth0", "entra", "okta")


def sam_claims(idp: IdPServer, vendor: str, **extra: Any) -> dict[str, Any]:
    """Sam's token at ``vendor``, asserting the deployer role (or permissions) there."""
    if vendor == "keycloak":
        return keycloak_claims(idp, roles=("infra-deployer",), **extra)
    if vendor == "auth0":
        return auth0_claims(idp, permissions=tuple(DEPLOYER), **extra)
    if vendor == "entra":
        return entra_claims(idp, roles=("Infra.Deployer",), **extra)
    return okta_claims(idp, groups=("Infra-Deployers",), **extra)


def sign(idp: IdPServer, vendor: str, claims: dict[str, Any], key: Key | None = None) -> str:
    key = key or idp.vendors[vendor].keys[0]
    return key.sign(HEADERS[vendor](key), claims)


class Clock:
    """The key cache's clock, moved by the test instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tokens(directory: Directory, clock: Clock | None = None) -> UserTokens:
    return UserTokens(directory, Settings(), keys=ProviderKeys(clock=clock or Clock()))


def refused(verifier: UserTokens, token: str, reason: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    assert caught.value.reason == reason, caught.value.message
    return caught.value


@pytest.fixture(scope="module")
def directory(idp: IdPServer) -> Directory:
    return directory_with(idp)


@pytest.mark.parametrize("vendor", VENDORS)
def test_each_vendor_layout_maps_to_the_directory_user_and_its_asserted_scopes(
        idp: IdPServer, directory: Directory, vendor: str) -> None:
    provider, identity = tokens(directory).verify(sign(idp, vendor, sam_claims(idp, vendor)))
    assert provider.issuer == idp.issuer(vendor)
    assert identity.user == "user:sam"
    assert identity.issuer == idp.issuer(vendor)
    assert identity.asserted == frozenset(DEPLOYER)
    holder, ignored = federated_holder(directory, provider, identity)
    assert sorted(holder.permissions) == sorted(DEPLOYER)  # sam holds both in the directory
    assert ignored == frozenset()


def test_the_subject_recorded_is_the_providers_sub(idp: IdPServer, directory: Directory) -> None:
    claims = entra_claims(idp, roles=("Infra.Deployer",))
    _, identity = tokens(directory).verify(sign(idp, "entra", claims))
    assert identity.subject == claims["sub"] and identity.user == "user:sam"
    assert SAM_OID != claims["sub"]  # Entra's user is named by oid, its sub is per application


def test_keycloak_client_roles_and_scope_count_as_assertions(
        idp: IdPServer, directory: Directory) -> None:
    claims = keycloak_claims(idp, client_roles=("urn:infra:repo:read",),
                             scope="openid urn:infra:incident:read")
    _, identity = tokens(directory).verify(sign(idp, "keycloak", claims))
    assert identity.asserted == {"urn:infra:repo:read", "urn:infra:incident:read"}


@pytest.mark.parametrize("audience", ["infrabot.acme.example", "https://infrabot.acme.example"])
def test_keycloak_client_roles_are_found_under_an_audience_holding_dots(
        idp: IdPServer, audience: str) -> None:
    trusting = directory_with(idp, keycloak={"audience": audience})
    claims = keycloak_claims(idp, aud=[audience, "account"], resource_access={
        audience: {"roles": ["urn:infra:repo:read"]},
        "infrabot": {"roles": ["urn:infra:incident:read"]}})  # the audience's first label: not it
    _, identity = tokens(trusting).verify(sign(idp, "keycloak", claims))
    assert identity.asserted == {"urn:infra:repo:read"}
    claims["resource_access"][audience]["roles"] = 42
    assert refused(tokens(trusting), sign(idp, "keycloak", claims), "invalid_claims").message \
        == f"claim 'resource_access.{audience}.roles' is not a string or a list of strings"


def test_a_token_asserting_nothing_grants_nothing(idp: IdPServer, directory: Directory) -> None:
    provider, identity = tokens(directory).verify(sign(idp, "okta", okta_claims(idp)))
    holder, _ = federated_holder(directory, provider, identity)
    assert holder.permissions == ()


# -- refusals ----------------------------------------------------------------------------------

@pytest.mark.parametrize("vendor", VENDORS)
def test_wrong_issuer(idp: IdPServer, directory: Directory, vendor: str) -> None:
    token = sign(idp, vendor, sam_claims(idp, vendor, iss="https://idp.attacker.example/"))
    refused(tokens(directory), token, "untrusted_issuer")


def test_a_trusted_issuer_named_by_a_token_another_provider_signed(
        idp: IdPServer, directory: Directory) -> None:
    claims = sam_claims(idp, "keycloak", iss=idp.issuer("okta"))
    refused(tokens(directory), sign(idp, "keycloak", claims), "unknown_kid")


@pytest.mark.parametrize("vendor", VENDORS)
def test_wrong_audience(idp: IdPServer, directory: Directory, vendor: str) -> None:
    token = sign(idp, vendor, sam_claims(idp, vendor, aud="api://another-api"))
    refused(tokens(directory), token, "audience_mismatch")


@pytest.mark.parametrize("vendor", VENDORS)
def test_expired(idp: IdPServer, directory: Directory, vendor: str) -> None:
    t = int(time.time())
    token = sign(idp, vendor, sam_claims(idp, vendor, iat=t - 900, exp=t - 60))
    refused(tokens(directory), token, "token_expired")


@pytest.mark.parametrize("vendor", VENDORS)
def test_unknown_kid_refetches_the_keys_once_per_interval(
        idp: IdPServer, directory: Directory, vendor: str) -> None:
    clock = Clock()
    verifier = tokens(directory, clock)
    verifier.verify(sign(idp, vendor, sam_claims(idp, vendor)))  # keys fetched and cached
    jwks = f"/{vendor}/jwks"
    before = idp.hits[jwks]
    refused(verifier, sign(idp, vendor, sam_claims(idp, vendor), rsa_key("early-8")),
            "unknown_kid")
    assert idp.hits[jwks] == before  # fetched just now: not again within min_refresh_seconds
    clock.now += 31
    refused(verifier, sign(idp, vendor, sam_claims(idp, vendor), rsa_key("rotated-9")),
            "unknown_kid")
    assert idp.hits[jwks] == before + 1  # one refresh, in case the provider rotated
    refused(verifier, sign(idp, vendor, sam_claims(idp, vendor), rsa_key("made-up-10")),
            "unknown_kid")
    assert idp.hits[jwks] == before + 1  # bounded: not again within min_refresh_seconds
    clock.now += 300
    verifier.verify(sign(idp, vendor, sam_claims(idp, vendor)))
    assert idp.hits[jwks] == before + 2  # older than refresh_seconds: fetched again


def test_a_key_the_provider_rotated_in_is_found_by_the_refresh(
        idp: IdPServer, directory: Directory) -> None:
    clock = Clock()
    verifier = tokens(directory, clock)
    verifier.verify(sign(idp, "okta", sam_claims(idp, "okta")))
    new = rsa_key("ok-2")
    idp.vendors["okta"].keys.append(new)
    clock.now += 31
    try:
        _, identity = verifier.verify(sign(idp, "okta", sam_claims(idp, "okta"), new))
        assert identity.user == "user:sam"
    finally:
        idp.vendors["okta"].keys.remove(new)


@pytest.mark.parametrize("vendor", VENDORS)
def test_alg_not_allowed(idp: IdPServer, directory: Directory, vendor: str) -> None:
    """The providers allow RS256 only: an ES256 token is refused before any key is looked up,
    even one the provider publishes (the allow-list is the configuration's, not the token's)."""
    es = ec_key("es-1")
    idp.vendors[vendor].keys.append(es)
    try:
        refused(tokens(directory), sign(idp, vendor, sam_claims(idp, vendor), es),
                "alg_not_allowed")
    finally:
        idp.vendors[vendor].keys.remove(es)
    key = idp.vendors[vendor].keys[0]
    forged = key.sign({"alg": "HS256", "kid": key.kid}, sam_claims(idp, vendor))
    refused(tokens(directory), forged, "alg_not_allowed")


def test_a_key_location_in_the_header_is_refused(idp: IdPServer, directory: Directory) -> None:
    key = idp.vendors["keycloak"].keys[0]
    token = key.sign({"alg": "RS256", "kid": key.kid, "jku": "https://attacker.example/jwks"},
                     sam_claims(idp, "keycloak"))
    refused(tokens(directory), token, "key_in_header")


def test_a_user_the_directory_does_not_know_is_refused(
        idp: IdPServer, directory: Directory) -> None:
    token = sign(idp, "keycloak", keycloak_claims(idp, user="mallory", roles=("infra-deployer",)))
    provider, identity = tokens(directory).verify(token)
    with pytest.raises(InvalidGrant) as caught:
        federated_holder(directory, provider, identity)
    assert caught.value.reason == "unknown_user"


def test_just_in_time_users_get_no_permissions_by_default(idp: IdPServer) -> None:
    directory = directory_with(idp, auth0={"just_in_time": True})
    token = sign(idp, "auth0", auth0_claims(idp, user_id="auth0|0000000000000bad",
                                            permissions=tuple(DEPLOYER)))
    provider, identity = tokens(directory).verify(token)
    holder, ignored = federated_holder(directory, provider, identity)
    assert identity.user == "user:mallory" and holder.permissions == ()
    assert ignored == frozenset(DEPLOYER)


def test_a_role_that_would_widen_the_directory_is_ignored(
        idp: IdPServer, directory: Directory) -> None:
    """Alex may not deploy; the IdP's deployer role does not change that."""
    token = sign(idp, "keycloak", keycloak_claims(idp, user="alex", roles=("infra-deployer",)))
    provider, identity = tokens(directory).verify(token)
    holder, ignored = federated_holder(directory, provider, identity)
    assert holder.permissions == ("urn:infra:monitoring:read",)
    assert ignored == {"urn:infra:deploy:create"}


def test_a_disabled_user_is_refused(idp: IdPServer, directory: Directory) -> None:
    token = sign(idp, "keycloak", keycloak_claims(idp, user="former-employee",
                                                  roles=("infra-deployer",)))
    provider, identity = tokens(directory).verify(token)
    with pytest.raises(InvalidGrant) as caught:
        federated_holder(directory, provider, identity)
    assert caught.value.reason == "unknown_user"


def test_an_email_outside_the_configured_domain_maps_to_no_user(
        idp: IdPServer, directory: Directory) -> None:
    token = sign(idp, "okta", okta_claims(idp, login="sam@attacker.example"))
    refused(tokens(directory), token, "unmappable_user")


def test_the_articles_inverted_shape_is_refused(idp: IdPServer, directory: Directory) -> None:
    claims = keycloak_claims(idp, user="infrabot", act={"sub": "sam"})
    refused(tokens(directory), sign(idp, "keycloak", claims), "inverted_chain")


def test_inverted_act_declared_by_the_profile_is_normalised(idp: IdPServer) -> None:
    directory = directory_with(idp, keycloak={"inverted_act": True})
    claims = keycloak_claims(idp, user="infrabot", roles=("infra-deployer",),
                             act={"sub": "3a0f2c55-sam", "preferred_username": "sam"})
    provider, identity = tokens(directory).verify(sign(idp, "keycloak", claims))
    assert identity == FederatedIdentity(user="user:sam", issuer=provider.issuer,
                                         subject="3a0f2c55-sam",
                                         asserted=frozenset(DEPLOYER), inverted=True)


def test_keys_that_cannot_be_fetched_fail_closed(idp: IdPServer) -> None:
    directory = directory_with(idp, okta={"discovery_url": idp.discovery_url("okta") + "x"})
    with pytest.raises(Unavailable) as caught:
        tokens(directory).verify(sign(idp, "okta", sam_claims(idp, "okta")))
    assert caught.value.reason == "jwks_unavailable"


def test_an_es256_provider_token_verifies_in_either_signature_form(idp: IdPServer) -> None:
    """A provider signs with its own library, whose ES256 signatures come high-S or low-S; both
    verify (the low-S rule is only for the tokens this server mints)."""
    es = ec_key("es-okta")
    idp.vendors["okta"].keys.append(es)
    try:
        directory = directory_with(idp, okta={"algorithms": ["ES256"]})
        token = sign(idp, "okta", sam_claims(idp, "okta"), es)
        for form in (twin(token, high=True), twin(token, high=False)):
            _, identity = tokens(directory).verify(form)
            assert identity.user == "user:sam"
    finally:
        idp.vendors["okta"].keys.remove(es)
