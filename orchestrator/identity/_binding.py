"""Sender-constrained issuance (RFC 9449 section 6): to which key a new token is bound.

Pure rules for the authorization server, given the verified proof of the request (if any) and
the DPoP key the authorization server holds for the agent a hand-off names (if any):

* the subject token, if bound, is usable only with a proof by its key (:func:`check_holder`);
* a token for a service is bound to the key that signed the request's proof; without a proof
  it is refused, unless the directory lets that service take unbound tokens (``dpop:
  optional``, for a migration) or binding is off and the service does not require it;
* a hand-off token (and a run's root token) is bound to the key of the agent ``may_act`` names,
  which that agent must then prove at its own exchange. An agent that has registered no key yet
  (its workers have not started: its hop waits in its queue) gets its hand-off without ``cnf``;
  with binding on, such a token is still exchanged only with a proof by the key the agent has
  registered by the time it exchanges it (:func:`check_delegate`), so no hand-off is ever
  usable without the delegate's DPoP key.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.errors import InvalidDPoPProof
from orchestrator.identity._claims import AccessClaims, Confirmation
from orchestrator.identity._dpop import Proof
from orchestrator.identity._exchange import Grant
from orchestrator.identity._policy import Directory


def service_binding(directory: Directory, service: str | None, proof: Proof | None, *,
                    default: bool) -> str | None:
    """The thumbprint a token for ``service`` (a directory name) is bound to, or None."""
    if proof is not None:
        return proof.jkt
    entry = directory.services.get(service) if service is not None else None
    if entry is None or entry.binding_required(default):
        raise InvalidDPoPProof("a token for this service must be DPoP-bound: send a DPoP proof "
                               "with the request", reason="dpop_proof_required")
    return None


def hand_off_binding(delegate_jkt: str | None, *, default: bool) -> str | None:
    """The thumbprint a hand-off is bound to: the delegate's registered DPoP key (None when
    binding is off, or when the delegate has registered none yet)."""
    return delegate_jkt if default else None


def check_delegate(claims: AccessClaims, proof: Proof | None,
                   registered_key: Callable[[], str | None], *, default: bool) -> None:
    """With binding on, an unbound hand-off token (``may_act``, no ``cnf``) is exchanged only
    with a proof by the key its agent has registered (``registered_key``: its thumbprint, asked
    only for such a token)."""
    if not default or claims.cnf is not None or claims.may_act is None:
        return
    registered = registered_key()
    if registered is None:
        raise InvalidDPoPProof(f"{claims.may_act.sub} has no DPoP key registered at this "
                               "server (POST /dpop_keys)", reason="dpop_key_not_registered")
    if proof is None:
        raise InvalidDPoPProof("a hand-off token is exchanged only with a DPoP proof by the "
                               "agent's registered key", reason="dpop_proof_missing")
    if proof.jkt != registered:
        raise InvalidDPoPProof("the DPoP proof is signed by a key other than the one the agent "
                               "registered", reason="dpop_key_mismatch")


def bound(grant: Grant, jkt: str | None) -> Grant:
    """``grant`` with its token bound to ``jkt`` (unchanged for None)."""
    if jkt is None:
        return grant
    claims = grant.claims.model_copy(update={"cnf": Confirmation(jkt=jkt)})
    return Grant(claims=claims, dropped=grant.dropped)
