"""Sender-constrained issuance (RFC 9449 section 6): to which key a new token is bound.

Pure rules for the authorization server, given the verified proof of the request (if any) and
the DPoP key the authorization server holds for the agent a hand-off names (if any):

* the subject token, if bound, is usable only with a proof by its key (:func:`check_holder`);
* a token for a service is bound to the key that signed the request's proof; without a proof
  it is refused, unless the directory lets that service take unbound tokens (``dpop:
  optional``, for a migration) or binding is off and the service does not require it;
* a hand-off token (and a run's root token) is bound to the key of the agent ``may_act`` names,
  which that agent must then prove at its own exchange. An agent registers a key per host it
  runs on (each host's state directory has its own); with exactly one registered, the hand-off
  is bound to it. With none yet (its workers have not started: its hop waits in its queue) or
  several (workers on several hosts, any of which may take the hop), the hand-off carries no
  ``cnf``, and with binding on it is exchanged only with a proof by one of the keys the agent
  has registered by then (:func:`check_delegate`): no hand-off is ever usable without one of
  the delegate's DPoP keys.
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


def hand_off_binding(delegate_keys: frozenset[str], *, default: bool) -> str | None:
    """The thumbprint a hand-off is bound to: the delegate's registered DPoP key when it has
    exactly one (None when binding is off, or it has none or several: see the module)."""
    return next(iter(delegate_keys)) if default and len(delegate_keys) == 1 else None


def check_delegate(claims: AccessClaims, proof: Proof | None,
                   registered_keys: Callable[[], frozenset[str]], *, default: bool) -> None:
    """With binding on, an unbound hand-off token (``may_act``, no ``cnf``) is exchanged only
    with a proof by one of the keys its agent has registered (``registered_keys``: their
    thumbprints, asked only for such a token)."""
    if not default or claims.cnf is not None or claims.may_act is None:
        return
    registered = registered_keys()
    if not registered:
        raise InvalidDPoPProof(f"{claims.may_act.sub} has no DPoP key registered at this "
                               "server (POST /dpop_keys)", reason="dpop_key_not_registered")
    if proof is None:
        raise InvalidDPoPProof("a hand-off token is exchanged only with a DPoP proof by one of "
                               "the agent's registered keys", reason="dpop_proof_missing")
    if proof.jkt not in registered:
        raise InvalidDPoPProof("the DPoP proof is signed by a key the agent has not registered",
                               reason="dpop_key_mismatch")


def bound(grant: Grant, jkt: str | None) -> Grant:
    """``grant`` with its token bound to ``jkt`` (unchanged for None)."""
    if jkt is None:
        return grant
    claims = grant.claims.model_copy(update={"cnf": Confirmation(jkt=jkt)})
    return Grant(claims=claims, dropped=grant.dropped)
