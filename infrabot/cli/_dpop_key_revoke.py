"""``infrabot keys revoke dpop:AGENT KID``: an agent's DPoP key, and the tokens bound to it.

Beyond the client registry (the key never proves the agent again, and is never registered
again), the tokens already bound to the key (``cnf.jkt``) are refused everywhere they are
checked, by the token endpoint and by every service (``bound_key_revoked``), not only when they
expire. They go first, so that a failure leaves the key as it was and running the command again
finishes it. A key that is no longer registered (its registration lapsed, or the agent's cap
dropped it) may still have live tokens bound to it: it is revoked all the same, by its
thumbprint; so is one revoked before, whose tokens are refused again (the command may have
stopped half way, or predate this).

The revocation registry is written where it is: Redis, here, when the settings name one (the
auth host holds it: docs/deploy.md), whether or not serve runs; else the in-process registry of
the authorization server running from this state directory, through its ``/revocations``
(``jkt``), as the trusted orchestrator client. With neither, no server holds a registry, and
none can accept a token of an earlier one (its epoch is gone: ``registry_reset``)."""

from __future__ import annotations

import re
import time

from infrabot.cli._common import CommandError
from infrabot.cli._held_keys import ORCHESTRATOR, orchestrator_key
from infrabot.cli._inspect import running_auth_server
from orchestrator.authserver import ClientRegistry
from orchestrator.client import AuthClient
from orchestrator.config import Settings
from orchestrator.errors import OAuthError, Unavailable
from orchestrator.identity import JKT_PATTERN, MAX_LIFETIME_SECONDS
from orchestrator.registry import open_store

_JKT = re.compile(JKT_PATTERN)
_REFUSED = "tokens already bound to it are refused (bound_key_revoked)"


def revoke_dpop_key(settings: Settings, registry: ClientRegistry, client_id: str,
                    kid: str) -> str:
    """Revoke DPoP key ``kid`` of ``client_id`` (``dpop:<agent>``) and its tokens; the line that
    says what was done. :class:`CommandError` for a key that is another client's, or no key's
    thumbprint, and when the revocation registry could not be told (nothing is revoked then)."""
    agent = client_id.removeprefix("dpop:")
    owner = next((e.client_id for e in registry.entries() if e.kid == kid), None)
    if owner not in (None, client_id):
        raise CommandError(f"no key {kid!r} is registered for {client_id!r} (it is {owner}'s)")
    if not _JKT.fullmatch(kid):
        raise CommandError(f"no key {kid!r} is registered for {client_id!r}, and it is no key's "
                           "thumbprint (43 of A-Z a-z 0-9 _ -)")
    revoked_before = any(r.kid == kid for r in registry.revoked())
    refused = refuse_bound_tokens(settings, kid)
    if revoked_before:
        return f"{client_id} {kid} was revoked before; {refused}"
    if not registry.revoke(client_id, kid, now=int(time.time()), unregistered=owner is None):
        raise CommandError(f"{kid!r} was registered or revoked for another client meanwhile: "
                           "tokens bound to it are refused, the registry is unchanged")
    was = "" if owner else " (no longer registered: it lapsed or was dropped)"
    return f"revoked {client_id} {kid}{was}: proofs by it no longer prove {agent}, and {refused}"


def refuse_bound_tokens(settings: Settings, jkt: str) -> str:
    """Refuse every token bound to DPoP key ``jkt`` for as long as one could live; what was
    done, as the end of a sentence. :class:`CommandError` when the registry could not be told:
    nothing is revoked then, and the command may be run again."""
    if settings.redis_url:
        store = open_store(settings.redis_url)
        try:
            store.revoke_key(jkt, expires_at=int(time.time()) + MAX_LIFETIME_SECONDS)
        except Unavailable:
            raise CommandError("nothing was revoked: the revocation registry "
                               "(INFRABOT_REDIS_URL) cannot be reached; run this again once it "
                               "answers") from None
        finally:
            store.close()
        return _REFUSED
    auth_url = running_auth_server(settings)
    if auth_url is None:
        return ("no server runs from this state directory, so no token bound to it can be "
                "accepted (a server's in-process registry goes with it)")
    try:
        with AuthClient(auth_url, ORCHESTRATOR, orchestrator_key(settings)) as client:
            client.revoke_by(jkt=jkt)
    except (Unavailable, OAuthError) as exc:
        raise CommandError(f"nothing was revoked: the authorization server at {auth_url} did "
                           f"not take the revocation ({exc}); run this again") from None
    return _REFUSED
