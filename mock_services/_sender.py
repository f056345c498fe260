"""Sender-constrained tokens at a service (RFC 9449 section 7): who may present a token.

A request presents its token under a scheme (``Bearer`` or ``DPoP``) and maybe a ``DPoP``
proof (:class:`Presented`). :meth:`SenderCheck.proof` verifies the proof for this request (the
method, the service's own URL and path, never the ``Host`` header, and the token's hash) before
the token is verified; :meth:`SenderCheck.check` then decides with the verified claims:

* a bound token (``cnf.jkt``) needs the ``DPoP`` scheme (as ``Bearer``:
  ``dpop_bound_token_as_bearer``), a proof (``dpop_proof_missing``) by the bound key
  (``dpop_key_mismatch``), used once (``dpop_proof_replayed``: its ``jti`` is claimed in the
  shared registry, in the round trip that checks revocation);
* an unbound token is refused under the ``DPoP`` scheme (``dpop_token_not_bound``), and as a
  ``Bearer`` token unless this service takes unbound tokens (the directory's ``dpop:
  optional``, or binding off and not ``required``): ``dpop_binding_required``.

Every refusal is a 401 with a ``WWW-Authenticate: DPoP`` challenge (:class:`DPoPRefusal`).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.config import Settings
from orchestrator.errors import InvalidDPoPProof, OAuthError, ProofRefusal
from orchestrator.identity import (
    DPOP_ALGS,
    AccessClaims,
    Directory,
    Proof,
    ProofCheck,
    ProofPolicy,
    check_holder,
    check_scheme,
    verify_proof,
)


def _proof_refusal(exc: OAuthError) -> ProofRefusal:
    return ProofRefusal(exc.message, reason=exc.reason)


@dataclass(frozen=True, slots=True)
class Presented:
    """How a request presents its token: the scheme (lower case), the ``DPoP`` header (None
    without one), the method and the URL this service serves the request at."""

    scheme: str
    proof: str | None
    method: str
    url: str


BEARER_ONLY = Presented("bearer", None, "GET", "")


class SenderCheck:
    def __init__(self, settings: Settings, directory: Directory, service: str | None) -> None:
        self.policy = ProofPolicy(
            allowed_algs=tuple(a for a in settings.allowed_algs if a in DPOP_ALGS),
            max_age=settings.dpop_proof_max_age_seconds, leeway=settings.leeway_seconds)
        entry = directory.services.get(service) if service is not None else None
        self.unbound_ok = entry is not None and not entry.binding_required(
            settings.dpop_binding)
        self.algs = " ".join(self.policy.allowed_algs)

    def proof(self, presented: Presented, token: str, *, now: int) -> Proof | None:
        """The request's verified proof, None without one (judged with the claims)."""
        if presented.proof is None:
            return None
        if presented.scheme != "dpop":
            raise ProofRefusal("a DPoP proof goes with the DPoP authorization scheme",
                               reason="dpop_scheme_required")
        try:
            return verify_proof(presented.proof, ProofCheck(presented.method, presented.url,
                                                            access_token=token),
                                self.policy, now=now)
        except InvalidDPoPProof as exc:
            raise _proof_refusal(exc) from exc

    def check(self, claims: AccessClaims, presented: Presented, proof: Proof | None,
              *, first_use: bool) -> None:
        """Refuse unless ``claims`` may be used as presented (``first_use``: the proof's
        ``jti`` was claimed now)."""
        check_scheme(claims, presented.scheme, unbound_ok=self.unbound_ok)
        if claims.cnf is None:
            return
        try:
            check_holder(claims, proof)
        except InvalidDPoPProof as exc:
            raise _proof_refusal(exc) from exc
        if not first_use:
            raise ProofRefusal("the DPoP proof was already used", reason="dpop_proof_replayed")
