"""A request's body read at the edge, bounded in size and in time, for every server here: the
authorization server's forms, the mock services and the webhook receiver.

The whole body must arrive within :data:`BODY_DEADLINE_SECONDS` of when the reading starts
(:class:`~orchestrator.errors.BodyTimeout`, 408: a client that declares more than it sends no
longer holds a request open); a client that closes the connection mid-body is
:class:`~orchestrator.errors.ClientDisconnected` (499, nginx's "client closed request": only ever
recorded, no one is left to answer). :func:`read_body` refuses a body over its limit, declared or
sent (:class:`~orchestrator.errors.BodyTooLarge`, 413); :func:`read_prefix` keeps the first bytes
past it instead, for a route that refuses it later, after checks that come first. Each server
answers these errors in its own shape, with its own status for a body too large.
"""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect, Request

from orchestrator.errors import BodyTimeout, BodyTooLarge, ClientDisconnected

BODY_DEADLINE_SECONDS = 10.0
"""How long a whole body may take to arrive once the head has (read at each request)."""


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; :class:`BodyTooLarge` as soon as it declares or sends more than ``limit``
    bytes (a chunked body is counted as it arrives), else as :func:`read_prefix`."""
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > limit:
        raise BodyTooLarge(f"request bodies are limited to {limit}")
    body = await read_prefix(request, limit)
    if len(body) > limit:
        raise BodyTooLarge(f"request bodies are limited to {limit}")
    return body


async def read_prefix(request: Request, limit: int) -> bytes:
    """The body, or its first ``limit + 1`` bytes when it is longer (enough to refuse it; the
    rest is never read). :class:`BodyTimeout` past :data:`BODY_DEADLINE_SECONDS`,
    :class:`ClientDisconnected` when the client closed the connection first."""
    chunks: list[bytes] = []
    size = 0
    seconds = BODY_DEADLINE_SECONDS
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    break
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {seconds:g}s") from None
    except ClientDisconnect:
        raise ClientDisconnected("the client closed the connection before sending the whole "
                                 "body") from None
    body = b"".join(chunks)
    return body[: limit + 1] if size > limit else body
