"""``GET /client_keys.json``: the registered public keys of every agent in the directory, so
that services verify the delegator signatures of a ``delegation_chain`` against the keys the
server authenticates those agents with (docs/delegation-chain.md).

Each key is written afresh from its public key object (:func:`~orchestrator.identity.public_jwk`):
whatever the registry stores, no private member is ever served. DPoP keys (``dpop:<agent>``)
and the orchestrator's key are not delegators' keys and are not listed.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from orchestrator.identity import ClientKeyLookup, Directory, public_jwk

CLIENT_KEYS_PATH = "/client_keys.json"


def client_keys_document(directory: Directory, keys: ClientKeyLookup) -> dict[str, Any]:
    """``{"clients": {agent id: {"keys": [public JWK ...]}}}`` for the directory's agents."""
    return {"clients": {agent: {"keys": [public_jwk(key) for key in keys(agent).values()]}
                        for agent in sorted(directory.agents)}}


def add_client_keys_route(app: FastAPI, directory: Directory, keys: ClientKeyLookup) -> None:
    @app.get(CLIENT_KEYS_PATH, summary="Agents' registered public keys (delegation records)")
    async def client_keys() -> JSONResponse:
        document = await run_in_threadpool(client_keys_document, directory, keys)
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=60"})
