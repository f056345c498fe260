"""Overlapped hops (docs/journal.md): an exchange a hop asks for, its answer, and the RFC 7009
revocation of a token asked for ahead that no step took."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from orchestrator.client import AuthClient
from orchestrator.errors import InfraBotError, OAuthError
from orchestrator.runs import shown_claims


@dataclass(frozen=True)
class Ask:
    """One exchange a hop asks for: its step, what for, and the request."""

    step: int
    what: str
    prove: bool
    joined: tuple[str, ...]
    target: tuple[tuple[str, str], ...]  # resource / audience / scope

    def __repr__(self) -> str:  # never shows a join's branch tokens
        return f"Ask({self.step}, {self.what!r})"


@dataclass(frozen=True)
class Issued:
    """An exchange's answer (the token response, or the server's refusal), its milliseconds,
    and whether it was asked for ahead."""

    answer: dict[str, Any] | OAuthError
    ms: int
    ahead: bool = False

    def __repr__(self) -> str:  # never shows the token
        return f"Issued(ms={self.ms}, ahead={self.ahead})"


def revoke_unused(auth: AuthClient, ask: Ask, pending: Future[Issued], log: Any) -> None:
    """RFC 7009: revoke a token asked for ahead and never used (the server audits it)."""
    if pending.cancel():
        return  # never asked: nothing was minted
    try:
        issued = pending.result()
    except InfraBotError as exc:  # no answer: nothing to revoke that we hold
        log.warning("ahead_token_unknown", reason=exc.reason)
        return
    if isinstance(issued.answer, OAuthError):
        return  # refused: nothing was minted
    claims = shown_claims(issued.answer.get("access_token")) or {}
    try:
        auth.revoke(issued.answer["access_token"])
    except InfraBotError as exc:  # it expires with its lifetime (docs/journal.md)
        log.warning("ahead_token_unrevoked", reason=exc.reason, jti=claims.get("jti"),
                    expires_in=issued.answer.get("expires_in"))
        return
    log.info("ahead_token_revoked", jti=claims.get("jti"))
