"""DPoP at the authorization server (RFC 9449): the proof of a token request, the server's
nonce, and the DPoP keys agents register so that a hand-off to them can be bound.

**Proofs.** A request to ``/token`` may carry one ``DPoP`` header; :meth:`DPoPGate.proof`
verifies it for ``POST`` at this server's own token endpoint URL (never the request's ``Host``),
with the server's nonce when ``dpop_nonce`` is on, and claims its ``jti`` once in the shared
registry. A missing or unaccepted nonce is ``use_dpop_nonce`` with the nonce to use in the
``DPoP-Nonce`` header; every token response carries the current nonce too.

**Registered keys.** A hand-off token is bound to the DPoP key of the agent its ``may_act``
names, so the server must know that key before the agent ever asks: an agent registers it at
``POST /dpop_keys``, authenticated with its own client assertion and proving the key with a DPoP
proof for that URL (:meth:`DPoPGate.register`). The server keeps it in its key book
(:mod:`._dpop_keys`), one key per host the agent runs on, each registration for
``dpop_key_registration_seconds``; a key that is another principal's or was revoked is refused
(``dpop_key_in_use``, ``dpop_key_revoked``). Nothing else names an agent's DPoP key: not the
delegator, not the token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.authserver._dpop_keys import DPoPKeyBook
from orchestrator.config import Settings
from orchestrator.errors import InvalidDPoPProof, PredatesMemory
from orchestrator.identity import (
    DPOP_ALGS,
    NonceIssuer,
    Proof,
    ProofCheck,
    ProofPolicy,
    RevocationStore,
    verify_proof,
)

DPOP_KEYS_PATH = "/dpop_keys"


def one_proof(values: Sequence[str]) -> str | None:
    """The request's one ``DPoP`` header, None without one; two are refused (RFC 9449 4.3)."""
    if len(values) > 1:
        raise InvalidDPoPProof("send at most one DPoP header", reason="dpop_proof_repeated")
    return values[0] if values else None


@dataclass
class DPoPGate:
    """What the authorization server checks and holds for DPoP."""

    settings: Settings
    registry: RevocationStore
    nonces: NonceIssuer
    book: DPoPKeyBook

    def __post_init__(self) -> None:
        s = self.settings
        self.policy = ProofPolicy(allowed_algs=tuple(a for a in s.allowed_algs if a in DPOP_ALGS),
                                  max_age=s.dpop_proof_max_age_seconds, leeway=s.leeway_seconds)
        self.token_url = f"{s.auth_url}/token"
        self.keys_url = f"{s.auth_url}{DPOP_KEYS_PATH}"
        self._current: tuple[int, str] | None = None  # (step, its nonce): one MAC per step

    def nonce(self, *, now: int) -> str | None:
        """The nonce to hand out now, None when the server asks for none. Every response
        carries it, and it changes once a step: computed once per step, not per response."""
        if not self.settings.dpop_nonce:
            return None
        step = now // self.nonces.step
        current = self._current
        if current is None or current[0] != step:
            current = self._current = (step, self.nonces.current(now=now))
        return current[1]

    def proof(self, value: str | None, *, now: int, url: str | None = None,
              method: str = "POST", access_token: str | None = None) -> Proof | None:
        """The verified, first-used proof of a request to ``url`` (default: the token
        endpoint; ``access_token``: the token it comes with); None when it carries none."""
        if value is None:
            return None
        nonce_ok = ((lambda n: self.nonces.accepts(n, now=now)) if self.settings.dpop_nonce
                    else None)
        check = ProofCheck(method, url or self.token_url, access_token=access_token,
                           nonce_ok=nonce_ok)
        proof = verify_proof(value, check, self.policy, now=now)
        self.claim(proof)
        return proof

    def claim(self, proof: Proof) -> None:
        """Claim ``proof``'s ``jti`` once in the shared registry, or refuse its reuse."""
        try:
            first = self.registry.claim_once(proof.replay_key, ttl=self.policy.replay_ttl(),
                                             issued_at=proof.iat)
        except PredatesMemory:
            first = False
        if not first:
            raise InvalidDPoPProof("the DPoP proof was already used (or predates the replay "
                                   "registry's memory): sign a new one",
                                   reason="dpop_proof_replayed")

    def register(self, client: str, value: str | None, *, now: int) -> Proof:
        """Hold the key ``value`` proves (a proof for this endpoint) as ``client``'s."""
        proof = self.proof(value, now=now, url=self.keys_url)
        if proof is None:
            raise InvalidDPoPProof("registering a DPoP key needs a DPoP proof by that key",
                                   reason="dpop_proof_missing")
        self.book.register(client, proof.key, now=now)
        return proof

    def registered(self, agent: str) -> frozenset[str]:
        """The thumbprints of ``agent``'s registered DPoP keys (empty if it has none)."""
        return self.book.registered(agent)
