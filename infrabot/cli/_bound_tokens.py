"""What ``infrabot keys revoke dpop:AGENT KID`` does beyond the client registry: the tokens
already bound to the key (``cnf.jkt``) are refused everywhere they are checked, by the token
endpoint and by every service (``bound_key_revoked``), not only until they expire.

The revocation registry is written where it is: Redis, here, when the settings name one (the
auth host holds it: docs/deploy.md), whether or not serve runs; else the in-process registry of
the authorization server running from this state directory, through its ``/revocations``
(``jkt``), as the trusted orchestrator client. With neither, no server holds a registry, and
none can accept a token of an earlier one (its epoch is gone: ``registry_reset``)."""

from __future__ import annotations

import time

from infrabot.cli._common import CommandError
from infrabot.cli._held_keys import ORCHESTRATOR, orchestrator_key
from infrabot.cli._inspect import running_auth_server
from orchestrator.client import AuthClient
from orchestrator.config import Settings
from orchestrator.errors import OAuthError, Unavailable
from orchestrator.identity import MAX_LIFETIME_SECONDS
from orchestrator.registry import open_store


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
        return "tokens already bound to it are refused (bound_key_revoked)"
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
    return "tokens already bound to it are refused (bound_key_revoked)"
