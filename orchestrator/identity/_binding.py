"""Sender-constrained issuance (RFC 9449 section 6): to which key a new token is bound.

Pure rules for the authorization server, given the verified proof of the request (if any) and
the DPoP key the authorization server holds for the agent a hand-off names (if any):

* the subject token, if bound, is usable only with a proof by its key (:func:`check_holder`);
* a token for a service is bound to the key that signed the request's proof; without a proof
  it is refused, unless the directory lets that service take unbound tokens (``dpop:
  optional``, for a migration) or binding is off and the service does not require it;
* a hand-off token (and a run's root token) is bound to the key of the agent ``may_act`` names,
  which that agent must then prove at its own exchange; with binding on, a hand-off to an agent
  whose key is not known is refused (``delegate_dpop_key_unknown``).
"""

from __future__ import annotations

from orchestrator.errors import InvalidDPoPProof, InvalidTarget
from orchestrator.identity._claims import Confirmation
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


def hand_off_binding(delegate: str, delegate_jkt: str | None, *, default: bool) -> str | None:
    """The thumbprint a hand-off to ``delegate`` is bound to (its registered DPoP key), or None
    when binding is off."""
    if not default:
        return None
    if delegate_jkt is None:
        raise InvalidTarget(f"{delegate} has no DPoP key registered at this server, so a "
                            "hand-off to it cannot be bound", reason="delegate_dpop_key_unknown")
    return delegate_jkt


def bound(grant: Grant, jkt: str | None) -> Grant:
    """``grant`` with its token bound to ``jkt`` (unchanged for None)."""
    if jkt is None:
        return grant
    claims = grant.claims.model_copy(update={"cnf": Confirmation(jkt=jkt)})
    return Grant(claims=claims, dropped=grant.dropped)
