"""HTTP plumbing shared by the monolith, the gateway and every service, written once.

* one table from domain errors to HTTP status (:data:`STATUS`), used by every process, so the same refusal has the same
  status and body everywhere;
* :class:`Endpoint` + :func:`build_app`: routes, health, readiness, metrics and the OpenAPI document from one list;
* request decoding that turns anything malformed into a 4xx JSON error, never a 500.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, TypeVar

import msgspec
import msgspec.inspect
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plumbing import tracing
from plumbing.auth import AuthConfig
from plumbing.faults import FAULTS, InjectedFault, admin_routes, admin_token
from plumbing.responses import JSON, ErrorBody, error_response, json_response
from plumbing.transports import RemoteCallError
from shop import errors
from shop.db import MAX_ID

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]

MAX_BODY_BYTES = 64 * 1024
NO_AUTH = AuthConfig()
# How a caller proves who it is (plumbing.auth): the document says so, so that tools can test it.
SECURITY_SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "bearer": {"type": "http", "scheme": "bearer"},
    "serviceCredential": {"type": "apiKey", "in": "header", "name": "X-Service-Credential"},
}
# The one table from domain refusals to HTTP statuses. Lookup follows the class hierarchy (most specific first).
STATUS: Mapping[type[errors.DomainError], int] = {
    errors.InvalidInput: 422,
    errors.IdempotencyKeyReused: 422,
    errors.NotFound: 404,
    errors.EmailTaken: 409,
    errors.OutOfStock: 409,
    errors.OrderInProgress: 409,
    errors.StepCancelled: 409,
    errors.InvalidState: 409,
    errors.InsufficientFunds: 402,
    errors.Unavailable: 503,
    errors.DomainError: 400,
}


def status_of(exc: errors.DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def domain_error_response(exc: errors.DomainError) -> Response:
    return error_response(status_of(exc), exc.code, exc.detail)


def error_from_body(status: int, body: bytes) -> errors.DomainError:
    """Turn an error reply of another process back into the domain error it was made from."""
    try:
        decoded = msgspec.json.decode(body, type=ErrorBody)
    except msgspec.MsgspecError:
        return errors.Unavailable(f"unexpected reply with status {status}")
    cls = errors.BY_CODE.get(decoded.error)
    if cls is None or (status_of(cls(decoded.detail)) != status and status < 500):
        return errors.DomainError(decoded.detail) if status < 500 else errors.Unavailable(decoded.detail)
    return cls(decoded.detail)


def decode(body: bytes, type_: type[T]) -> T:
    """Decode a JSON request body; anything malformed becomes :class:`~shop.errors.InvalidInput`."""
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise errors.InvalidInput(f"invalid body: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise errors.InvalidInput(f"malformed JSON: {exc}") from exc


async def read_json(request: Request, type_: type[T]) -> T:
    """Read and decode at most :data:`MAX_BODY_BYTES` of a JSON body."""
    return decode(await read_body(request), type_)


async def read_body(request: Request) -> bytes:
    declared = content_length(request)
    if declared is not None and declared > MAX_BODY_BYTES:
        raise errors.InvalidInput(f"body larger than {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise errors.InvalidInput(f"body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# What each path parameter of the shop names, and the refusal when a segment cannot name one (a segment that is not an
# id names no record: 404, as for an id that does not exist).
Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
PATH_PARAMS: Mapping[str, tuple[Any, type[errors.NotFound]]] = {
    "user_id": (Id, errors.UserNotFound),
    "product_id": (Id, errors.ProductNotFound),
    "order_id": (Id, errors.OrderNotFound),
}
Length = Annotated[int, msgspec.Meta(ge=0)]


def _text_value(raw: str, text: bool) -> object:
    """The value a query or path parameter carries, to be validated exactly as the same value in a JSON body.

    A parameter bound to a string is taken as sent. Any other is read as the JSON text of its value, so that the
    integer rules are the body's: ``5`` and ``-0`` are integers, ``5.0``, ``1e3``, ``+5``, ``05``, ``--5`` and `` 5``
    are not (they stay strings, which the validator refuses with a message naming the parameter).
    """
    if text or not raw or raw[0].isspace() or raw[-1].isspace():
        return raw
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return raw


def _text_fields(type_: type) -> frozenset[str]:
    return _struct_text_fields(type_)


@functools.cache
def _struct_text_fields(type_: Any) -> frozenset[str]:
    """The fields of the Struct ``type_`` that are strings (taken as sent rather than read as JSON)."""
    info = msgspec.inspect.type_info(type_)
    assert isinstance(info, msgspec.inspect.StructType), f"{type_} must be a msgspec Struct"
    return frozenset(f.encode_name for f in info.fields if isinstance(f.type, msgspec.inspect.StrType))


def parameters(items: Sequence[tuple[str, str]], type_: type[T], where: str) -> T:
    """Validate query parameters against ``type_``, a Struct with ``forbid_unknown_fields``, with the one validator
    of bodies (msgspec), so that a parameter is refused exactly when the document's schema refuses it.

    Anything malformed, unknown or repeated becomes :class:`~shop.errors.InvalidInput` (422), never an exception.
    """
    text = _text_fields(type_)
    values: dict[str, object] = {}
    for name, raw in items:
        if name in values:
            raise errors.InvalidInput(f"{where} parameter {name[:40]!r} is given more than once")
        values[name] = _text_value(raw, name in text)
    try:
        return msgspec.convert(values, type_)
    except msgspec.ValidationError as exc:
        raise errors.InvalidInput(f"invalid {where} parameter: {exc}") from exc


def query(request: Request, type_: type[T]) -> T:
    """The query parameters of ``request`` as ``type_`` (see :func:`parameters`)."""
    return parameters(request.query_params.multi_items(), type_, "query")


def path_id(request: Request, name: str) -> int:
    """The id named ``name`` in the path, validated as the same id in a body; a segment that cannot be one is the
    ``NotFound`` of that kind of record (a path that names nothing), never a 500."""
    schema, missing = PATH_PARAMS[name]
    raw: str = request.path_params[name]
    try:
        value: int = msgspec.convert(_text_value(raw, False), schema)
    except msgspec.ValidationError:
        raise missing(f"{name.removesuffix('_id')} {raw[:40]!r} does not exist") from None
    return value


def content_length(request: Request) -> int | None:
    """The declared Content-Length, None when absent or not a length (the body is then read and bounded as sent)."""
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    try:
        value: int = msgspec.convert(_text_value(declared, False), Length)
    except msgspec.ValidationError:
        return None
    return value


class NoQuery(msgspec.Struct, forbid_unknown_fields=True):
    """The query of an endpoint that takes none: any parameter is unknown."""


@dataclass(frozen=True)
class Endpoint:
    """One route: its handler, and what the OpenAPI document says of it."""

    method: str
    path: str
    handler: Handler
    summary: str
    body: type | None = None
    responses: Mapping[int, type | None] = field(default_factory=dict)
    # The query parameters (a msgspec Struct with forbid_unknown_fields): validated before the handler runs, and
    # stated in the document from the same type.
    query: type = NoQuery
    headers: Sequence[str] = ()
    # Headers the endpoint reads when they are sent (documented as not required).
    optional_headers: Sequence[str] = ()
    # None: a public endpoint (API key). A set: an internal endpoint, for these calling components only.
    callers: frozenset[str] | None = None
    # JSON Schema of each header in ``headers`` and ``optional_headers`` (default: any string), for the document.
    header_schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


def internal(endpoints: Sequence[Endpoint], callers: Mapping[str, Iterable[str]]) -> list[Endpoint]:
    """Mark ``endpoints`` internal: ``callers`` maps each endpoint's name (``"POST /charges"``) to the components that
    may call it. Every endpoint must be listed, so nothing is callable by default."""
    missing = {e.name for e in endpoints} - set(callers)
    if missing:
        raise ValueError(f"no callers given for {sorted(missing)}")
    return [replace(e, callers=frozenset(callers[e.name])) for e in endpoints]


class Metrics:
    """Prometheus metrics of one app, in its own registry so that colocated apps do not collide."""

    def __init__(self, app_name: str) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time spent handling a request, by endpoint and status.",
            ["app", "endpoint", "status"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.errors = Counter(
            "http_errors_total",
            "Error responses by endpoint and code.",
            ["app", "endpoint", "code"],
            registry=self.registry,
        )
        self.app_name = app_name

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def refusal(auth: AuthConfig, callers: frozenset[str] | None, request: Request) -> Response | None:
    """401 without a valid API key (public) or service credential (internal), 403 for a caller not allowed here."""
    if not auth.enabled:
        return None
    if callers is None:
        if auth.api_key_ok(request.headers):
            return None
        return error_response(401, "unauthorized", "a valid API key is required (X-API-Key or Authorization: Bearer)")
    caller = auth.caller(request.headers)
    if caller is None:
        return error_response(401, "unauthorized", "a valid service credential is required")
    if caller not in callers:
        return error_response(403, "forbidden", f"{caller} may not call this endpoint")
    return None


def wrap(endpoint: Endpoint, metrics: Metrics, app_name: str, auth: AuthConfig) -> Handler:
    """Run a handler with access control, error translation, metrics and a span; the only place a DomainError
    becomes a response."""
    handler, name, callers = endpoint.handler, endpoint.name, endpoint.callers
    query_type = endpoint.query
    observe = metrics.latency.labels

    async def run(request: Request) -> Response:
        started = time.perf_counter()
        refused = refusal(auth, callers, request)
        if refused is not None:
            metrics.errors.labels(app_name, name, "unauthorized").inc()
            return refused
        # At the public edge only a caller with a service credential of the run may ask for a trace (plumbing.tracing).
        token = tracing.begin(
            request.headers.get("traceparent"), app_name, callers is not None or tracing.trusted(auth, request.headers)
        )
        try:
            if request.scope["query_string"]:
                # Refuse what the document refuses before anything runs; the handler reads the same type again.
                query(request, query_type)
            if FAULTS.any:
                await FAULTS.enter(app_name)
            response = await handler(request)
        except errors.DomainError as exc:
            metrics.errors.labels(app_name, name, exc.code).inc()
            response = domain_error_response(exc)
        except InjectedFault as exc:
            response = error_response(500, "injected_fault", str(exc))
        except RemoteCallError as exc:
            # A peer that cannot be reached is a dependency failure of this request, not a bug of this process.
            metrics.errors.labels(app_name, name, errors.Unavailable.code).inc()
            response = error_response(503, errors.Unavailable.code, str(exc))
        elapsed = time.perf_counter() - started
        if token is not None:
            bytes_in = content_length(request) or 0
            tracing.end(token, name, elapsed, bytes_in, len(response.body), response.status_code)
        observe(app_name, name, str(response.status_code)).observe(elapsed)
        response.headers["server-timing"] = f"{app_name};dur={elapsed * 1000:.3f}"
        return response

    return run


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    # Keep the exception's headers: a 405 must name the allowed methods (Allow, RFC 9110).
    return json_response(ErrorBody(code, str(exc.detail)), exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    return error_response(500, "internal_error", f"{type(exc).__name__}: the server failed on this request")


def build_app(
    name: str,
    endpoints: Sequence[Endpoint],
    *,
    title: str | None = None,
    ready: Callable[[], bool] = lambda: True,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
    version: str = "1.0.0",
    auth: AuthConfig = NO_AUTH,
) -> Starlette:
    """A Starlette app serving ``endpoints`` plus health, readiness, metrics and the OpenAPI document.

    ``name`` labels the metrics and spans of this process; ``title`` heads the OpenAPI document.
    """
    metrics = Metrics(name)
    document = msgspec.json.encode(openapi(title or f"archbench {name} service", version, endpoints))

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if ready():
            return json_response({"status": "ready"})
        return error_response(503, "not_ready", f"{name} is starting")

    async def openapi_json(request: Request) -> Response:
        return Response(document, media_type=JSON)

    routes = [Route(e.path, wrap(e, metrics, name, auth), methods=[e.method], name=e.name) for e in endpoints]
    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *admin_routes(admin_token()),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.metrics = metrics
    return app


def openapi(title: str, version: str, endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``endpoints``, with schemas generated from their msgspec types."""
    types: list[Any] = [ErrorBody]
    for e in endpoints:
        types += [t for t in (e.body, *e.responses.values()) if t is not None]
    unique = list(dict.fromkeys(types))
    schemas, components = msgspec.json.schema_components(unique, ref_template="#/components/schemas/{name}")
    ref = dict(zip(unique, schemas, strict=True))
    error_ref = ref[ErrorBody]
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        op: dict[str, Any] = {"summary": e.summary, "operationId": _operation_id(e), "responses": {}}
        params = [
            {"name": name, "in": "path", "required": True, "schema": msgspec.json.schema(PATH_PARAMS[name][0])}
            for name in _path_names(e.path)
        ]
        query_schema = msgspec.json.schema(e.query)
        query_schema = query_schema["$defs"][query_schema["$ref"].rsplit("/", 1)[1]]
        params += [
            {"name": name, "in": "query", "required": name in query_schema["required"], "schema": schema}
            for name, schema in query_schema["properties"].items()
        ]
        headers = [(h, True) for h in e.headers] + [(h, False) for h in e.optional_headers]
        params += [
            {"name": h, "in": "header", "required": need, "schema": dict(e.header_schemas.get(h, {"type": "string"}))}
            for h, need in headers
        ]
        if params:
            op["parameters"] = params
        op["security"] = [{"apiKey": []}, {"bearer": []}] if e.callers is None else [{"serviceCredential": []}]
        if e.body is not None:
            op["requestBody"] = {"required": True, "content": {JSON: {"schema": ref[e.body]}}}
        refusals: dict[int, type | None] = {401: None} if e.callers is None else {401: None, 403: None}
        for status, rtype in {**e.responses, **refusals}.items():
            schema = error_ref if rtype is None else ref[rtype]
            description = "error" if rtype is None else "success"
            op["responses"][str(status)] = {"description": description, "content": {JSON: {"schema": schema}}}
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


def _path_names(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def _operation_id(e: Endpoint) -> str:
    words = [p.strip("{}") for p in e.path.split("/") if p]
    return e.method.lower() + "_" + "_".join(words or ["root"])
