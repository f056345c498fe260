"""A mock service answering as slowly as a real one: ``service_latency_ms`` (orchestrator/config.py).

Real Datadog, GitHub, AWS and PagerDuty calls take tens to hundreds of milliseconds; the mocks
answer in about one. With a latency set, each API call to the service waits that long before it
is handled: an ``asyncio.sleep`` on the server's event loop, so the process goes on serving
every other request (other services, the authorization server, the other branch of a fan-out)
meanwhile, as a real service's network and processing time would leave its caller free.
``/openapi.json`` (public, not an API call) answers at once. A service with no latency gets no
middleware at all.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.config import Settings


class AnswerDelay:
    """Pure ASGI middleware: HTTP requests other than ``skip`` wait ``seconds`` first."""

    def __init__(self, app: ASGIApp, seconds: float, skip: str) -> None:
        self.app = app
        self.seconds = seconds
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != self.skip:
            await asyncio.sleep(self.seconds)
        await self.app(scope, receive, send)


def add_latency(app: FastAPI, name: str, settings: Settings) -> None:
    """Make service ``name``'s app wait its configured latency before each API call."""
    seconds = settings.service_latency_ms.seconds(name)
    if seconds > 0:
        app.add_middleware(AnswerDelay, seconds=seconds, skip=app.openapi_url or "")
