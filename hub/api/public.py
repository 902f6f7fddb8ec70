"""Routes anyone on the network may call: the hub's identity (PROTOCOL.md §1)."""

from __future__ import annotations

from aiohttp import web

from hub.services import SERVICES

PROTOCOL_VERSION = 1


async def get_hub(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    if services.consent is not None:
        # With the age recipient that bodies sent through a relay are sealed to (PROTOCOL §7.6).
        return web.json_response(services.consent.identity_document(services.config.hub.name))
    return web.json_response(
        {
            "hub_id": services.hub_key.hub_id,
            "public_jwk": services.hub_key.public_jwk,
            "name": services.config.hub.name,
            "protocol": PROTOCOL_VERSION,
        }
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/hub", get_hub)
