"""Fetching a published JSON document (metadata, a JWKS): one bounded GET, any failure
:class:`~orchestrator.errors.Unavailable` with reason ``jwks_unavailable``; a JWKS through the
metadata that names it (:func:`jwks_through_metadata`). A message names the URL without its user,
password, query or fragment, where a provider's credentials may sit: it may reach anyone who
sent a token (the 503's description)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from orchestrator.errors import Unavailable

MAX_DOCUMENT_BYTES = 256 * 1024


def unavailable(message: str) -> Unavailable:
    return Unavailable(message, reason="jwks_unavailable")


def shown(url: str) -> str:
    """``url`` as a message may name it: scheme, host, port and path only."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    try:
        netloc += f":{parts.port}" if parts.port is not None else ""
    except ValueError:  # not a port: nothing of it is shown
        pass
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def get_json(client: httpx.Client, url: str) -> dict[str, Any]:
    """The JSON object at ``url`` (200, at most 256 KiB), or :class:`Unavailable`."""
    response = client.get(url, headers={"Accept": "application/json"})
    if response.status_code != 200:
        raise unavailable(f"{shown(url)} answered {response.status_code}")
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise unavailable(f"{shown(url)} answered an oversized document")
    try:
        document = response.json()
    except ValueError as exc:
        raise unavailable(f"{shown(url)} did not answer JSON") from exc
    if not isinstance(document, dict):
        raise unavailable(f"{shown(url)} did not answer a JSON object")
    return document


def jwks_through_metadata(client: httpx.Client, metadata_url: str, issuer: str, *,
                          who: str) -> dict[str, Any]:
    """The JWKS the metadata document at ``metadata_url`` points to (RFC 8414 / OpenID
    Connect Discovery), which must name ``issuer`` (``who``: whose metadata, for the message)."""
    metadata = get_json(client, metadata_url)
    if metadata.get("issuer") != issuer:
        raise unavailable(f"{who} metadata names another issuer")
    jwks_uri = metadata.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("http://", "https://")):
        raise unavailable(f"{who} metadata has no usable jwks_uri")
    return get_json(client, jwks_uri)
