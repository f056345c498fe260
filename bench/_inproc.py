"""The authorization server and a service's checks in this process, and the raw signature
operations they are compared with.

:func:`stack` builds the real :class:`~infrabot.stack.Stack` (keys, directory, registry,
audit store, :class:`~orchestrator.authserver.AuthorizationService`) in a temporary state
directory. :class:`RawJWS` does what no verifier can avoid, with ``cryptography`` alone.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from infrabot.stack import ORCHESTRATOR_CLIENT, Stack
from orchestrator.authserver._service import GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS
from orchestrator.config import Settings
from orchestrator.identity import CLIENT_ASSERTION_TYPE, Context, SigningKey, make_assertion

Form = dict[str, list[str]]

# What the post-deploy workflow needs (everything sam holds but secrets:manage).
WORKFLOW_SCOPES = [
    "urn:infra:monitoring:read", "urn:infra:repo:read", "urn:infra:deploy:comment",
    "urn:infra:deploy:create", "urn:infra:infrastructure:read", "urn:infra:infrastructure:tag",
    "urn:infra:infrastructure:clean", "urn:infra:incident:read", "urn:infra:incident:resolve",
]
_ECDSA = ec.ECDSA(hashes.SHA256())


def context(run_id: str = "run-bench0001") -> Context:
    return Context(trigger="ci_pipeline", environment="prod", repository="acme/service-x",
                   commit="9f2c1e7", run_id=run_id)


@contextmanager
def stack(root: Path, *, redis_url: str | None = None, **overrides: Any) -> Iterator[Stack]:
    """The real stack in ``root`` (nothing listens: the services' URLs are only names), issuing
    unbound tokens unless told otherwise: the in-process benchmarks measure the exchange and a
    service's check without DPoP, as their baselines always did; ``bench/dpop.py`` measures what
    binding adds, end to end."""
    overrides = {"dpop_binding": False, **overrides}
    settings = Settings(state_dir=root, redis_url=redis_url, log_level="WARNING", **overrides)
    built = Stack.build(settings)
    try:
        yield built
    finally:
        built.close()


def root_token(st: Stack, run_id: str = "run-bench0001") -> str:
    """sam's root token of a post-deploy run, for agent:infrabot."""
    return st.auth.issue_root("user:sam", WORKFLOW_SCOPES, context(run_id), "agent:infrabot",
                              ORCHESTRATOR_CLIENT).access_token


def assertion(st: Stack, agent: str) -> str:
    s = st.settings
    return make_assertion(st.clients[agent], issuer=agent, subject=agent,
                          audience=f"{s.auth_url}/token", now=int(time.time()))


def exchange_form(st: Stack, agent: str, subject_token: str, **target: str) -> Form:
    """An RFC 8693 request as the token endpoint parses it, with a fresh client assertion."""
    form = {"grant_type": [GRANT_TOKEN_EXCHANGE], "subject_token": [subject_token],
            "subject_token_type": [TOKEN_TYPE_ACCESS],
            "client_assertion_type": [CLIENT_ASSERTION_TYPE],
            "client_assertion": [assertion(st, agent)], "client_id": [agent]}
    form.update({name: [value] for name, value in target.items()})
    return form


def exchange(st: Stack, agent: str, subject_token: str, **target: str) -> str:
    return st.auth.token(exchange_form(st, agent, subject_token, **target)).access_token


def cleanup_chain(st: Stack, run_id: str = "run-bench0001") -> dict[str, str]:
    """The post-deploy chain's tokens: sam → infrabot → argocd → cleanup, and the service
    tokens at depth 1 (infrabot at Datadog) and depth 3 (cleanup at AWS)."""
    s = st.settings
    root = root_token(st, run_id)
    to_argocd = exchange(st, "agent:infrabot", root, audience="agent:argocd",
                         scope="urn:infra:infrastructure:tag urn:infra:infrastructure:clean "
                               "urn:infra:incident:resolve")
    to_cleanup = exchange(st, "agent:argocd", to_argocd, audience="agent:cleanup",
                          scope="urn:infra:infrastructure:clean urn:infra:incident:resolve")
    return {
        "root": root,
        "datadog": exchange(st, "agent:infrabot", root, resource=s.service_url("datadog"),
                            scope="urn:infra:monitoring:read"),
        "aws": exchange(st, "agent:cleanup", to_cleanup, resource=s.service_url("aws"),
                        scope="urn:infra:infrastructure:clean"),
    }


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class RawJWS:
    """ES256 done raw: a signature check over a token's signing input, or a signature of one.

    The DER form of the signature is prepared before timing, so what is timed is the elliptic
    curve operation and its SHA-256 only."""

    def __init__(self, token: str, public: ec.EllipticCurvePublicKey) -> None:
        head, payload, sig = token.split(".")
        raw = b64url_decode(sig)
        half = len(raw) // 2
        self.signing_input = f"{head}.{payload}".encode()
        self.der = encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                        int.from_bytes(raw[half:], "big"))
        self.public = public
        self.size = len(token)

    def verify(self, _i: int = 0) -> None:
        self.public.verify(self.der, self.signing_input, _ECDSA)

    @staticmethod
    def signer(key: SigningKey, signing_input: bytes) -> Any:
        private = key.private
        assert isinstance(private, ec.EllipticCurvePrivateKey)

        def sign(_i: int = 0) -> None:
            private.sign(signing_input, _ECDSA)

        return sign
