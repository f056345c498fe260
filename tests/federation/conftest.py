"""Stand-in identity providers of four vendors on loopback, and a directory that trusts them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.identity import Directory
from tests.federation._idp import AUDIENCE, SAM_OID, TENANT, IdPServer, Vendor, rsa_key

REPO = Path(__file__).resolve().parents[2]
DEPLOYER = ["urn:infra:deploy:create", "urn:infra:monitoring:read"]


@pytest.fixture(scope="module")
def idp() -> Iterator[IdPServer]:
    vendors = [Vendor("keycloak", "keycloak/realms/acme", [rsa_key("kc-1")]),
               Vendor("auth0", "auth0/", [rsa_key("a0-1")]),
               Vendor("entra", f"entra/{TENANT}/v2.0", [rsa_key("en-1")], jwks_alg=False),
               Vendor("okta", "okta/oauth2/default", [rsa_key("ok-1")])]
    with IdPServer(vendors) as server:
        yield server


def providers(idp: IdPServer, **overrides: dict[str, Any]) -> dict[str, Any]:
    """The ``identity_providers:`` entries trusting each vendor of ``idp``."""
    entries: dict[str, dict[str, Any]] = {
        "keycloak": {"issuer": idp.issuer("keycloak"), "profile": "keycloak",
                     "discovery_url": idp.discovery_url("keycloak"), "audience": AUDIENCE,
                     "roles": {"infra-deployer": DEPLOYER}},
        "auth0": {"issuer": idp.issuer("auth0"), "profile": "auth0",
                  "discovery_url": idp.discovery_url("auth0"), "audience": AUDIENCE,
                  "subjects": {"auth0|64f1c0ffee5a5ab0": "user:sam",
                               "auth0|a1e0000000000001": "user:alex",
                               "auth0|0000000000000bad": "user:mallory"}},
        "entra": {"issuer": idp.issuer("entra"), "profile": "entra",
                  "jwks_url": idp.jwks_url("entra"), "audience": AUDIENCE,
                  "subjects": {SAM_OID: "user:sam"}, "roles": {"Infra.Deployer": DEPLOYER}},
        "okta": {"issuer": idp.issuer("okta"), "profile": "okta",
                 "discovery_url": idp.discovery_url("okta"), "audience": AUDIENCE,
                 "email_domain": "acme.example", "roles": {"Infra-Deployers": DEPLOYER}},
    }
    for name, changes in overrides.items():
        entries[name] = {**entries[name], **changes}
    return entries


def directory_with(idp: IdPServer, **overrides: dict[str, Any]) -> Directory:
    document = yaml.safe_load((REPO / "workflows" / "directory.yaml").read_text())
    return Directory.model_validate({**document,
                                     "identity_providers": providers(idp, **overrides)})


def workflows_with(tmp: Path, providers_yaml: dict[str, Any]) -> Path:
    """A copy of the repository's workflows whose directory trusts ``providers_yaml``."""
    tmp.mkdir(parents=True, exist_ok=True)
    for path in (REPO / "workflows").glob("*.yaml"):
        text = path.read_text()
        if path.name == "directory.yaml":
            text += "\n" + yaml.safe_dump({"identity_providers": providers_yaml})
        (tmp / path.name).write_text(text)
    shutil.copytree(REPO / "workflows" / "services", tmp / "services", dirs_exist_ok=True)
    return tmp
