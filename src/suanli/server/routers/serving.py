"""Service traffic: the agents' links (``/api/v1/agents/link``, a WebSocket with the site's
token), one endpoint per service (``/serve/TENANT/NAME/...``) and the OpenAI-compatible routes
(``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``) that route by ``model`` to the
caller's tenant's services. Calls need a token with the ``serve:invoke`` scope. Answers stream
back as the replica sends them (server-sent events pass through event by event).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from suanli.app import servicerequests as requests
from suanli.app.errors import ServiceError, TooLarge, Unauthorized, Unprocessable
from suanli.app.servicedesk import Outgoing
from suanli.core.linkframes import MAX_BODY, forwarded
from suanli.server.deps import Caller, Control

router = APIRouter(tags=["serving"])

#: Methods (and routes) whose requests may be sent again to another replica when the first died
#: before answering: they change nothing, or (the OpenAI routes) only compute an answer.
RETRYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
OPENAI_ROUTES = ("/v1/chat/completions", "/v1/completions")


@router.websocket("/api/v1/agents/link")
async def link(websocket: WebSocket) -> None:
    """An agent's link: requests for its replicas go down, their answers come up."""
    control = websocket.app.state.control
    auth = websocket.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    try:
        site = await run_in_threadpool(requests.link_site, control, token)
    except Unauthorized:
        await websocket.close(code=4401, reason="a valid site agent token is required")
        return
    await websocket.accept()

    async def recv() -> bytes | None:
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return None
                if message.get("bytes") is not None:
                    return bytes(message["bytes"])
        except WebSocketDisconnect:
            return None

    async def resolve(site_name: str, attempt_id: int) -> str | None:
        return await run_in_threadpool(requests.replica_service, control, site_name, attempt_id)

    await control.servicedesk.run_link(site, recv, websocket.send_bytes, resolve)


async def _relay(request: Request, control: Control, service_id: str, path: str, body: bytes) -> Response:
    query = request.url.query
    retryable = request.method in RETRYABLE_METHODS or path in OPENAI_ROUTES or "idempotency-key" in request.headers
    outgoing = Outgoing(request.method, path + (f"?{query}" if query else ""), forwarded(request.headers.items()), body)
    answer = await control.servicedesk.invoke(service_id, outgoing, retryable=retryable)
    return StreamingResponse(answer.body, status_code=answer.status, headers=_headers(answer.headers))


def _headers(items: list[tuple[str, str]]) -> dict[str, str]:
    return dict(items)


async def _body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise TooLarge(f"a request to a service may carry at most {MAX_BODY // (1024 * 1024)} MiB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise TooLarge(f"a request to a service may carry at most {MAX_BODY // (1024 * 1024)} MiB")
    return bytes(body)


@router.api_route(
    "/serve/{tenant}/{name}/{path:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
    include_in_schema=False,  # a pass-through: the service's own API, not ours, says what it takes
)
async def serve(tenant: str, name: str, path: str, request: Request, control: Control, who: Caller) -> Response:
    """Forward the request to a ready replica of the service; its answer streams back."""
    service_id = await control.servicedesk.route(
        (who.name, who.token_id or "", "serve", tenant, name),
        lambda: run_in_threadpool(requests.invocable, control, who, tenant, name),
    )
    return await _relay(request, control, service_id, "/" + path, await _body(request))


def _openai_error(exc: ServiceError) -> JSONResponse:
    kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}.get(
        exc.status, "invalid_request_error" if exc.status < 500 else "api_error"
    )
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    body = {"error": {"message": exc.detail, "type": kind, "param": None, "code": exc.status}}
    return JSONResponse(body, status_code=exc.status, headers=headers)


# OpenAI's own API reference describes these bodies; our schema leaves them out, as it does /serve/.
@router.post("/v1/chat/completions", include_in_schema=False)
@router.post("/v1/completions", include_in_schema=False)
async def openai(request: Request, control: Control, who: Caller) -> Response:
    """OpenAI-compatible: the ``model`` of the body names the service (its name or one of its
    ``models``); the request goes to it unchanged. Errors are OpenAI-shaped."""
    try:
        body = await _body(request)
        try:
            model = json.loads(body).get("model") if body else None
        except (ValueError, AttributeError):
            model = None
        if not isinstance(model, str) or not model:
            raise Unprocessable("the body must be JSON with a 'model' naming one of your services (GET /v1/models)")
        service_id = await control.servicedesk.route(
            (who.name, who.token_id or "", "model", model),
            lambda: run_in_threadpool(requests.by_model, control, who, model),
        )
        return await _relay(request, control, service_id, request.url.path, body)
    except ServiceError as exc:
        return _openai_error(exc)


@router.get("/v1/models")
async def models(control: Control, who: Caller) -> Response:
    """The models the caller's tenant's running services answer to."""
    try:
        data = await run_in_threadpool(requests.models, control, who)
    except ServiceError as exc:
        return _openai_error(exc)
    return JSONResponse({"object": "list", "data": data})
