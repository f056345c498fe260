"""The served exchange's lower bound on this stack: ``python -m bench._stack_floor``, a process
serving one route, ``POST /token``, on exactly what ``infrabot serve`` uses (uvicorn with uvloop
and the bounded httptools protocol, via :class:`~orchestrator._servers.ServerGroup`; a plain
Starlette route; the form read as the token endpoint reads it; one hop to the thread pool), doing
only the cryptography of an exchange through the project's identity API: the client assertion
verified (:meth:`~orchestrator.authserver._clients.ClientAuthenticator.verified`), the subject
token verified (:meth:`~orchestrator.identity.TokenVerifier.verify`), a token signed
(:func:`~orchestrator.identity.mint`). No Redis, no audit record, no policy decision.

``INFRABOT_BENCH_FLOOR_MODE`` says what the route does beyond reading the form:

* ``hop`` (the default): the cryptography in the thread pool, as ``/token`` runs its exchange;
* ``loop``: the same cryptography on the event loop, no thread hop (what an exchange whose every
  wait were awaited, not blocked on, could cost);
* ``edge``: nothing at all, a fixed answer (what the HTTP edge alone costs a form POST).

Started by :mod:`bench.exchange_http` with the cluster's environment (so the same keys, issuer
and token endpoint URL) and ``INFRABOT_BENCH_FLOOR_FILE``: it binds a port the OS picks, writes
its URL to that file once serving, and serves until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator._servers import ServerGroup, bind
from orchestrator.authserver import AuthorizationService, ClientKeys, open_registry
from orchestrator.authserver._forms import Form, TokenRequest, read_form
from orchestrator.config import Settings
from orchestrator.identity import mint
from orchestrator.keystore import KeyRing
from orchestrator.registry import open_store
from orchestrator.workflows import load_directory

MODES = ("hop", "loop", "edge")


def crypto_app(service: AuthorizationService, mode: str = "hop") -> Starlette:
    """One route: an exchange's two verifications and one signature, nothing else (``mode``:
    where they run, or ``edge``: not at all)."""
    if mode not in MODES:
        raise ValueError(f"INFRABOT_BENCH_FLOOR_MODE must be one of {', '.join(MODES)}")

    def crypto_only(form: Form) -> dict[str, str]:
        request = TokenRequest.read(form)
        now = service.now()
        service.clients.verified(request.client, now=now)
        subject = service.verifier.verify(request.subject_token.require(),
                                          audience=service.issuer, now=now)
        return {"access_token": mint(subject.claims, service.keyring.current)}

    async def token(request: Request) -> Response:
        form = await read_form(request)
        if mode == "edge":
            return JSONResponse({"access_token": "-"})
        if mode == "loop":
            return JSONResponse(crypto_only(form))
        return JSONResponse(await run_in_threadpool(crypto_only, form))

    return Starlette(routes=[Route("/token", token, methods=["POST"])])


def main() -> None:
    settings = Settings()
    now = int(time.time())
    service = AuthorizationService(
        settings=settings,
        keyring=KeyRing.open(settings.keys_dir / "signing", settings.signing_alg, now=now),
        directory=load_directory(settings.workflows_dir / "directory.yaml"),
        revocation=open_store(None),  # never asked: nothing here claims or checks
        client_keys=ClientKeys(open_registry(settings), settings.allowed_algs), services={})
    sock = bind(settings.host, 0)
    url = f"http://{settings.host}:{sock.getsockname()[1]}"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    group = ServerGroup()
    group.add(crypto_app(service, os.environ.get("INFRABOT_BENCH_FLOOR_MODE", "hop")), sock)
    with group:
        path = Path(os.environ["INFRABOT_BENCH_FLOOR_FILE"])
        path.with_suffix(".tmp").write_text(url)
        path.with_suffix(".tmp").replace(path)  # whole: the driver reads it once it exists
        stop.wait()


if __name__ == "__main__":
    main()
