"""A stand-in identity provider per vendor: test keys served through real discovery and JWKS
endpoints on loopback (counting each fetch), and tokens built to each vendor's documented
claim layout, signed by those keys.

Layouts (access tokens, as each vendor documents them):

* Keycloak: ``iss`` ``<base>/realms/<realm>``, ``aud`` a list of client ids, ``sub`` a UUID,
  ``preferred_username``, ``realm_access.roles``, ``resource_access.<client>.roles``, ``scope``,
  ``azp``, ``typ: Bearer``; header ``typ: JWT``.
* Auth0: ``iss`` ``https://<tenant>/`` (trailing slash), ``sub`` ``auth0|<id>``, ``aud`` the API
  identifier and the userinfo URL, ``permissions`` (RBAC), ``scope``, ``azp``.
* Microsoft Entra ID (v2.0): ``iss`` ``https://login.microsoftonline.com/<tid>/v2.0``, ``aud``
  the application id URI, ``oid``, ``tid``, ``preferred_username``, ``roles`` (app roles),
  ``scp``, ``ver: 2.0``; header with ``x5t`` beside ``kid``; JWKS keys without ``alg``.
* Okta (custom authorization server): ``iss`` ``https://<org>/oauth2/<server>``, ``sub`` the
  login (an e-mail address), ``uid``, ``cid``, ``scp`` (an array), ``groups``, ``ver: 1``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "api://infrabot"
TENANT = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"
SAM_OID = "00000000-0000-0000-66f3-3332eca7ea81"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Key:
    kid: str
    alg: str
    private: Any

    def public_jwk(self, *, with_alg: bool = True) -> dict[str, Any]:
        codec = RSAAlgorithm if self.alg == "RS256" else ECAlgorithm
        jwk: dict[str, Any] = codec.to_jwk(self.private.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig"})
        if with_alg:
            jwk["alg"] = self.alg
        return jwk

    def sign(self, header: dict[str, Any], payload: dict[str, Any]) -> str:
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
        codec = RSAAlgorithm(RSAAlgorithm.SHA256) if self.alg == "RS256" \
            else ECAlgorithm(ECAlgorithm.SHA256)
        signature = codec.sign(signing_input.encode(), self.private)
        return f"{signing_input}.{b64(signature)}"


def rsa_key(kid: str) -> Key:
    return Key(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str) -> Key:
    return Key(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


@dataclass
class Vendor:
    """One provider: its name (the path it is served under), issuer path and keys."""

    name: str
    issuer_path: str
    keys: list[Key] = field(default_factory=list)
    jwks_alg: bool = True  # whether its JWKS keys name their alg (Entra's do not)


class IdPServer:
    """Discovery and JWKS of several vendors on one loopback server, counting fetches."""

    def __init__(self, vendors: list[Vendor]) -> None:
        self.vendors = {v.name: v for v in vendors}
        self.hits: Counter[str] = Counter()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def issuer(self, name: str) -> str:
        return f"{self.base}/{self.vendors[name].issuer_path}"

    def discovery_url(self, name: str) -> str:
        return f"{self.issuer(name).rstrip('/')}/.well-known/openid-configuration"

    def jwks_url(self, name: str) -> str:
        return f"{self.base}/{name}/jwks"

    def _document(self, path: str) -> dict[str, Any] | None:
        for name, vendor in self.vendors.items():
            if path == f"/{name}/jwks":
                return {"keys": [k.public_jwk(with_alg=vendor.jwks_alg) for k in vendor.keys]}
            if path == f"/{vendor.issuer_path.rstrip('/')}/.well-known/openid-configuration":
                return {"issuer": self.issuer(name), "jwks_uri": self.jwks_url(name)}
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                document = server._document(self.path)
                body = json.dumps(document).encode()
                self.send_response(200 if document is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        return Handler


def now() -> int:
    return int(time.time())


def keycloak_claims(idp: IdPServer, *, user: str = "sam", roles: tuple[str, ...] = (),
                    client_roles: tuple[str, ...] = (), scope: str = "openid profile email",
                    **extra: Any) -> dict[str, Any]:
    t = now()
    return {"exp": t + 300, "iat": t, "jti": str(uuid.uuid4()), "iss": idp.issuer("keycloak"),
            "aud": [AUDIENCE, "account"], "sub": str(uuid.uuid4()), "typ": "Bearer",
            "azp": "infrabot-cli", "session_state": str(uuid.uuid4()), "acr": "1",
            "realm_access": {"roles": ["offline_access", "uma_authorization", *roles]},
            "resource_access": {AUDIENCE: {"roles": list(client_roles)},
                                "account": {"roles": ["manage-account", "view-profile"]}},
            "scope": scope, "email_verified": True, "name": user.title(),
            "preferred_username": user, "email": f"{user}@acme.example", **extra}


def auth0_claims(idp: IdPServer, *, user_id: str = "auth0|64f1c0ffee5a5ab0", 
                 permissions: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    t = now()
    return {"iss": idp.issuer("auth0"), "sub": user_id,
            "aud": [AUDIENCE, f"{idp.issuer('auth0')}userinfo"], "iat": t, "exp": t + 300,
            "azp": "Xq1v3CLIclient", "scope": "openid profile email",
            "permissions": list(permissions), **extra}


def entra_claims(idp: IdPServer, *, oid: str = SAM_OID, roles: tuple[str, ...] = (),
                 scp: str = "access_as_user", **extra: Any) -> dict[str, Any]:
    t = now()
    return {"aud": AUDIENCE, "iss": idp.issuer("entra"), "iat": t, "nbf": t, "exp": t + 300,
            "aio": "AWQAm/8TAAAA", "azp": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
            "azpacr": "0", "name": "Sam", "oid": oid, "preferred_username": "sam@acme.example",
            "rh": "0.AXkA", "roles": list(roles), "scp": scp,
            "sub": "MF4f-ggWMEji12KynJUNQZphaUTvLcQug5jdF2nl01Q", "tid": TENANT,
            "uti": "fqiBqXLPj0eQa82S-IYFAA", "ver": "2.0", **extra}


def okta_claims(idp: IdPServer, *, login: str = "sam@acme.example",
                scp: tuple[str, ...] = ("openid",), groups: tuple[str, ...] = (),
                **extra: Any) -> dict[str, Any]:
    t = now()
    return {"ver": 1, "jti": "AT.0mP4JNAOMYGD5ua0Hv8MF5zS2_RMU8sL0xhBs", "iss": idp.issuer("okta"),
            "aud": AUDIENCE, "iat": t, "exp": t + 300, "cid": "0oa1ef2ghIJK3lMn4o5p",
            "uid": "00u1abc2DEF3ghIJ4k5l", "scp": list(scp), "auth_time": t - 10, "sub": login,
            "groups": list(groups), **extra}


HEADERS = {
    "keycloak": lambda k: {"alg": k.alg, "typ": "JWT", "kid": k.kid},
    "auth0": lambda k: {"alg": k.alg, "typ": "JWT", "kid": k.kid},
    "entra": lambda k: {"typ": "JWT", "alg": k.alg, "x5t": k.kid, "kid": k.kid},
    "okta": lambda k: {"kid": k.kid, "alg": k.alg},
}
