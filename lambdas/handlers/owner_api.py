"""Owner API Lambda: the claim page's HTTP API behind the Cognito JWT authorizer, and its OpenAPI document.

Powertools' APIGatewayHttpResolver routes; every route but the reading (GET) ones is validated with the
pydantic models of `lambdas.models`, request and response. Route functions only parse, call
`lambdas.logic`, and return the answer. One exception handler turns everything into `{"error", "message"}`
JSON: domain errors with their status, validation errors as 400 `validation_error` with a sentence
naming the field, anything else as a logged 500.

Cold start: pydantic costs more to import than the rest of this function together (docs/performance.md),
and the page's first request (`GET /v1/devices`) needs none of it. So reading routes are not validated and
return plain dicts (their views are built by `lambdas.domain`), and the models are imported by the first
request that validates a body or builds the document (`_models()`), into this module's namespace, where
Powertools resolves the routes' annotations.

The caller is the JWT's `sub` claim (API Gateway verified the token); the caller's email is the `email`
claim of an ID token, else the user pool's record of the account (`lambdas.adapters.cognito.caller_email`:
the access token the page sends has no `email`).
"""

from __future__ import annotations

import inspect
import os
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from lambdas import definitions, http, logs
from lambdas.adapters import cognito
from lambdas.errors import BadRequest, LatchkeyError, ServiceUnavailable, Unauthorized
from lambdas.logic import claims, owner

if TYPE_CHECKING:  # imported by _models() when first needed
    from lambdas.models.owner import (
        ClaimRequest,
        Device,
        DeviceList,
        EventList,
        RenameRequest,
        Share,
        ShareList,
        ShareRequest,
        Transfer,
        TransferList,
        TransferRequest,
    )
    from lambdas.models.pending import PendingCreateRequest
    from lambdas.models.rotation import RotationStatus
    from lambdas.models.state import StatePatch

log = logs.logger("owner_api")

TITLE = "Latchkey"
API_VERSION = "1.0.0"
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]
JSON = "application/json"

app = APIGatewayHttpResolver(enable_validation=False)  # per route: see route()
OWNER_ROUTES = {r.route_key: r for r in definitions.ROUTES if r.function == "OwnerApi"}
REGISTERED: set[str] = set()  # route keys with a route function (tests compare it with OWNER_ROUTES)


def route(method: str, path: str, **options: Any) -> Any:
    """Register a route function for a route declared in definitions.ROUTES (the one list the stack,
    the local gateway and this resolver share); an undeclared route fails at import."""
    key = f"{method} {path.replace('<', '{').replace('>', '}')}"
    if key not in OWNER_ROUTES:
        raise LookupError(f"{key} is not declared in lambdas/definitions.py ROUTES")
    REGISTERED.add(key)
    rule = path.replace("{", "<").replace("}", ">")

    def register(func: Any) -> Any:
        # inspect.signature reads parameter names without evaluating the (string) annotations.
        if not validated and "body" in inspect.signature(func).parameters:
            raise TypeError(f"{key}: a reading route takes no body")
        return app.route(rule, method=[method], enable_validation=validated, **options)(func)

    validated = method not in READING
    return register


READING = ("GET", "HEAD", "OPTIONS")  # not validated: they answer with views built by lambdas.domain


def _models() -> None:
    """Import the pydantic models into this module's namespace (Powertools resolves annotations there)."""
    if "ClaimRequest" in globals():
        return
    from lambdas.models import common, owner, pending, rotation, state

    names = {
        common: ("ErrorBody", "GatewayError"),
        owner: (
            "ClaimRequest",
            "Device",
            "DeviceList",
            "EventList",
            "RenameRequest",
            "Share",
            "ShareList",
            "ShareRequest",
            "Transfer",
            "TransferList",
            "TransferRequest",
        ),
        pending: ("PendingCreateRequest",),
        rotation: ("RotationStatus",),
        state: ("StatePatch",),
    }
    globals().update({name: getattr(module, name) for module, items in names.items() for name in items})


# --- errors ------------------------------------------------------------------------------------------


class ValidationFailed(BadRequest):
    code = "validation_error"


class UnsupportedMediaType(LatchkeyError):
    status = 415
    code = "unsupported_media_type"


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "not_found",
}


def _field(loc: Any) -> str:
    parts = [str(p) for p in (loc or ())]
    if parts and parts[0] in ("body", "path", "query", "header"):
        parts = parts[1:]
    return ".".join(parts)


def _sentence(error: dict[str, Any]) -> str:
    """A sentence for one pydantic/Powertools validation error, naming the field."""
    kind = str(error.get("type", ""))
    field = _field(error.get("loc"))
    ctx = error.get("ctx") or {}
    if kind == "json_invalid":
        return "The request body is not valid JSON."
    if not field:
        if kind == "missing":
            return "The request body is required (a JSON object)."
        return "The request body must be a JSON object."
    if kind == "missing":
        return f"The field '{field}' is required."
    if kind in ("string_too_short", "too_short"):
        if ctx.get("min_length") == 1:
            return f"The field '{field}' must not be empty."
        return f"The field '{field}' must be at least {ctx.get('min_length')} characters long."
    if kind in ("string_too_long", "too_long"):
        return f"The field '{field}' must be at most {ctx.get('max_length')} characters long."
    if kind == "string_type":
        return f"The field '{field}' must be a string."
    if kind == "string_pattern_mismatch":
        return f"The field '{field}' contains characters that are not allowed."
    message = str(error.get("msg") or "is invalid").rstrip(".")
    return f"The field '{field}' is invalid: {message[:1].lower() + message[1:]}."


def _error_response(error: BaseException) -> Response:
    """The shared map (lambdas.http.error_response) as a Powertools Response."""
    answer = http.error_response(error)
    headers = {k: v for k, v in answer["headers"].items() if k.lower() != "content-type"}
    return Response(status_code=answer["statusCode"], content_type=JSON, body=answer["body"], headers=headers)


@app.exception_handler(Exception)
def _on_error(exc: Exception) -> Response:
    """The one place where exceptions become answers."""
    if isinstance(exc, LatchkeyError):
        if exc.status >= 500:
            logs.event(log, 40, "failed", error=exc.code, detail=exc.message)
        return _error_response(exc)
    if isinstance(exc, RequestUnsupportedContentType):
        return _error_response(
            UnsupportedMediaType("The request body must be JSON (Content-Type: application/json).")
        )
    if isinstance(exc, RequestValidationError):
        errors = list(exc.errors())
        if not any((e.get("loc") or ("",))[0] == "response" for e in errors):
            first = errors[0] if errors else {}
            return _error_response(ValidationFailed(_sentence(first)))
        log.error("response failed validation: %s", [(e.get("loc"), e.get("type")) for e in errors])
    elif isinstance(exc, ServiceError):  # Powertools' own: no route (404), method not allowed, ...
        error = LatchkeyError("No such route." if exc.status_code in (404, 405) else str(exc.msg))
        error.status, error.code = exc.status_code, _STATUS_CODES.get(exc.status_code, "error")
        return _error_response(error)
    else:
        log.exception(
            "unhandled error",
            extra={"fields": {"path": app.current_event.raw_path if app.current_event else "?"}},
        )
    return _error_response(exc)


def _responses(ok: int, description: str, *codes: int) -> dict[int, Any]:
    """OpenAPI responses: the success (schema from the return annotation) and the errors, as ErrorBody."""
    text = {
        400: "Invalid request (`validation_error`, `invalid_code`, `bad_request`).",
        401: "Missing or invalid token.",
        403: "Your role on this shared device does not allow this (only the owner may).",
        404: "Not found (also: another account's device).",
        409: "Conflict.",
        413: "Request body larger than 16 KB.",
        429: "Too many failed attempts; see `Retry-After`.",
    }
    error_body = {"schema": {"$ref": "#/components/schemas/ErrorBody"}}  # a reference: no model at import
    errors = {code: {"description": text[code], "content": {JSON: error_body}} for code in codes}
    return {ok: {"description": description}, **errors}


# --- the caller --------------------------------------------------------------------------------------


def _caller(with_email: bool = False) -> tuple[str, str | None]:
    """(owner id, email) from the JWT claims the authorizer verified; 401 without them. The email is an
    ID token's claim, or with `with_email` (routes that store it) the pool's record: an access token has
    none, and reads should not wait for Cognito."""
    claims_ = app.current_event.request_context.authorizer.jwt_claim
    sub = claims_.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("Sign in to use this API.")
    if not with_email:
        email = claims_.get("email")
        return sub, str(email) if email else None
    try:
        return sub, cognito.caller_email(claims_)
    except Exception as exc:  # the pool unreachable: storing no email would be wrong, so say so
        logs.event(log, 40, "caller_email_unavailable", error=type(exc).__name__)
        raise ServiceUnavailable("Your account could not be read just now - try again.") from exc


def _source_ip() -> str:
    # The viewer's address when the page calls through CloudFront (lambdas.http.source_ip checks the proof).
    return http.source_ip(app.current_event.raw_event)


def _public_api_url() -> str:
    """The API's URL as devices should call it: configured, or the host this request came to."""
    configured = os.environ.get("LATCHKEY_PUBLIC_API_URL")
    if configured:
        return configured.rstrip("/")
    headers = app.current_event.headers
    context = app.current_event.raw_event.get("requestContext") or {}
    host = headers.get("x-forwarded-host") or headers.get("host") or context.get("domainName") or ""
    return f"{headers.get('x-forwarded-proto') or 'https'}://{host}"


# --- claims and devices ------------------------------------------------------------------------------

DEVICES = ["devices"]


@route(
    "POST",
    "/v1/claims",
    summary="Claim a device with the code on its label",
    description="Idempotent: claiming your own device again answers 200. 409 if another account owns it.",
    tags=DEVICES,
    security=SECURITY,
    responses=_responses(200, "The claimed device.", 400, 401, 404, 409, 413, 429),
)
def claim(body: ClaimRequest) -> Device:
    owner_id, email = _caller(with_email=True)
    device, _ = claims.claim_device(owner_id, email, body.claimCode, body.name, _source_ip())
    return Device(**device)


@route(
    "GET",
    "/v1/devices",
    summary="Your devices, newest first",
    tags=DEVICES,
    security=SECURITY,
    responses=_responses(200, "Your devices.", 401),
)
def list_devices() -> DeviceList:
    owner_id, _ = _caller()
    return {"devices": owner.list_devices(owner_id)}  # type: ignore[return-value]  # the DeviceList shape


@route(
    "GET",
    "/v1/devices/<id>",
    summary="One device",
    tags=DEVICES,
    security=SECURITY,
    responses=_responses(200, "The device.", 401, 404),
)
def get_device(id: str) -> Device:
    owner_id, _ = _caller()
    return owner.get_device(owner_id, id)  # type: ignore[return-value]  # the Device shape


@route(
    "PATCH",
    "/v1/devices/<id>",
    summary="Rename a device",
    tags=DEVICES,
    security=SECURITY,
    responses=_responses(200, "The renamed device.", 400, 401, 403, 404),
)
def rename_device(id: str, body: RenameRequest) -> Device:
    owner_id, _ = _caller()
    return Device(**owner.rename(owner_id, id, body.name, _source_ip()))


@route(
    "DELETE",
    "/v1/devices/<id>",
    summary="Delete a device",
    description="Removes its certificate and thing; its next poll gets 404. The audit trail is kept.",
    tags=DEVICES,
    security=SECURITY,
    status_code=204,
    responses=_responses(204, "Deleted.", 401, 403, 404),
)
def delete_device(id: str) -> None:
    owner_id, _ = _caller()
    owner.delete(owner_id, id, _source_ip())


@route(
    "POST",
    "/v1/devices/<id>/revoke",
    summary="Revoke a device's certificate",
    description="Disconnects the device; its polls get 403 until it is released or deleted.",
    tags=DEVICES,
    security=SECURITY,
    responses=_responses(200, "The revoked device.", 401, 403, 404),
)
def revoke_device(id: str) -> Device:
    owner_id, _ = _caller()
    return Device(**owner.revoke(owner_id, id, _source_ip()))


@route(
    "POST",
    "/v1/devices/<id>/release",
    summary="Release a device",
    description="Tells the agent to wipe its credentials, revokes the certificate and returns the device "
    "to `unclaimed`, so it can be claimed again with its label.",
    tags=DEVICES,
    security=SECURITY,
    responses=_responses(200, "The device, now unclaimed.", 401, 403, 404),
)
def release_device(id: str) -> Device:
    owner_id, _ = _caller()
    return Device(**owner.release(owner_id, id, _source_ip()))


@route(
    "GET",
    "/v1/devices/<id>/events",
    summary="A device's audit trail, newest first",
    tags=DEVICES,
    security=SECURITY,
    responses=_responses(200, "The audit trail.", 401, 403, 404),
)
def device_events(id: str) -> EventList:
    owner_id, _ = _caller()
    return {"events": owner.events(owner_id, id)}  # type: ignore[return-value]  # the EventList shape


@route(
    "GET",
    "/v1/devices/<id>/state",
    summary="Relays and sensors: reported, desired and delta of the device shadow",
    tags=DEVICES,
    security=SECURITY,
    responses=_responses(200, "The device's shadow state.", 401, 404),
)
def device_state(id: str) -> dict[str, Any]:
    owner_id, _ = _caller()
    return owner.device_state(owner_id, id)


@route(
    "PATCH",
    "/v1/devices/<id>/state",
    summary="Switch relays, rename them, set their logic or a sensor's calibration offset",
    tags=DEVICES,
    security=SECURITY,
    responses=_responses(200, "The device's shadow state after the change.", 400, 401, 403, 404, 409),
)
def change_device_state(id: str, body: StatePatch) -> dict[str, Any]:
    owner_id, _ = _caller()
    return owner.change_state(owner_id, id, body.model_dump(exclude_none=True), _source_ip())


# --- sharing and transfer (lambdas.logic.sharing, lambdas.logic.transfer) ----------------------------

SHARING = ["sharing and transfer"]


def _sharing() -> Any:
    from lambdas.logic import sharing  # deferred: only these routes need it

    return sharing


def _transfer() -> Any:
    from lambdas.logic import transfer

    return transfer


@route(
    "GET",
    "/v1/devices/<id>/shares",
    summary="Who a device is shared with (owner only)",
    tags=SHARING,
    security=SECURITY,
    responses=_responses(200, "The device's members.", 401, 403, 404),
)
def list_shares(id: str) -> ShareList:
    caller, _ = _caller()
    return {"shares": _sharing().list_shares(caller, id)}  # type: ignore[return-value]  # the ShareList shape


@route(
    "POST",
    "/v1/devices/<id>/shares",
    summary="Share a device with another account, or change a member's role (owner only)",
    description="`viewer` sees status and sensors; `operator` also switches relays and changes settings. "
    "Sharing with a member again sets their role. 404 also when no account has this email.",
    tags=SHARING,
    security=SECURITY,
    status_code=201,
    responses=_responses(201, "The share.", 400, 401, 403, 404, 409, 429),
)
def add_share(id: str, body: ShareRequest) -> Share:
    caller, _ = _caller()
    return Share(**_sharing().add_share(caller, id, body.email, body.role, _source_ip()))


@route(
    "DELETE",
    "/v1/devices/<id>/shares/<userId>",
    summary="Remove a member (owner), or leave a shared device (the member)",
    tags=SHARING,
    security=SECURITY,
    status_code=204,
    responses=_responses(204, "Removed.", 401, 403, 404),
)
def remove_share(id: str, userId: str) -> None:
    caller, _ = _caller()
    _sharing().remove_share(caller, id, userId, _source_ip())


@route(
    "POST",
    "/v1/devices/<id>/transfer",
    summary="Offer a device to another account (owner only); the offer expires in 7 days",
    description="Accepting it makes the recipient the owner: new certificate, no shares, name and relay "
    "settings reset, none of the previous owner's history. One pending offer per device.",
    tags=SHARING,
    security=SECURITY,
    status_code=201,
    responses=_responses(201, "The offer.", 400, 401, 403, 404, 409, 429),
)
def offer_transfer(id: str, body: TransferRequest) -> Transfer:
    caller, email = _caller()
    return Transfer(**_transfer().offer(caller, email, id, body.email, _source_ip()))


@route(
    "GET",
    "/v1/transfers",
    summary="Transfer offers to you and offers you made that are still pending",
    tags=SHARING,
    security=SECURITY,
    responses=_responses(200, "The offers.", 401),
)
def list_transfers() -> TransferList:
    caller, _ = _caller()
    return {"transfers": _transfer().list_transfers(caller)}  # type: ignore[return-value]  # the TransferList shape


@route(
    "POST",
    "/v1/transfers/<id>/accept",
    summary="Accept a transfer offer: the device becomes yours",
    description="The device's old certificate is revoked; it provisions again on its next poll.",
    tags=SHARING,
    security=SECURITY,
    responses=_responses(
        200, "The device, now yours (state `claimed` until it provisions).", 401, 403, 404, 409
    ),
)
def accept_transfer(id: str) -> Device:
    caller, email = _caller()
    device = _transfer().accept(caller, email, id, _source_ip())
    return Device(**{**device.owner_view(), "role": "owner"})


@route(
    "DELETE",
    "/v1/transfers/<id>",
    summary="Decline a transfer offer (recipient) or cancel it (sender)",
    tags=SHARING,
    security=SECURITY,
    status_code=204,
    responses=_responses(204, "Declined or cancelled.", 401, 404, 409),
)
def decline_transfer(id: str) -> None:
    caller, _ = _caller()
    _transfer().decline(caller, id, _source_ip())


@route(
    "POST",
    "/v1/devices/<id>/rotate",
    summary="Renew the device's certificate",
    description="Asks the agent for a new key and certificate (a retained notice on its commands topic). "
    "The old certificate works until the device has connected with the new one. Idempotent while a "
    "rotation is in progress; 409 unless the device is active.",
    tags=DEVICES,
    security=SECURITY,
    responses=_responses(200, "The certificate and the rotation in progress.", 401, 404, 409),
)
def rotate_device(id: str) -> RotationStatus:
    from lambdas.logic import rotation  # deferred: only this route needs it

    owner_id, _ = _caller()
    owner.owned(owner_id, id)  # malformed ids and other owners' devices: the same 404 as every route
    answer = rotation.request(
        id, actor=owner_id, source_ip=_source_ip(), owner_id=owner_id, not_found=owner.NOT_FOUND_MESSAGE
    )
    return RotationStatus.model_validate(answer)


# --- pending devices (registration tokens; lambdas.logic.registration) --------------------------------

PENDING = ["pending devices"]


def _registration() -> Any:
    from lambdas.logic import registration  # deferred: only the pending routes need it

    return registration


@route(
    "POST",
    "/v1/pending",
    summary="Add a device: a pending device and its one-time registration token",
    tags=PENDING,
    security=SECURITY,
    status_code=201,
    responses=_responses(201, "The pending device, its token and device configuration.", 400, 401, 429),
)
def create_pending(body: PendingCreateRequest) -> dict[str, Any]:
    owner_id, email = _caller(with_email=True)
    result: dict[str, Any] = _registration().create_pending(
        owner_id, email, body.name, body.board, _source_ip(), api_url=_public_api_url()
    )
    return result


@route(
    "GET",
    "/v1/pending",
    summary="Your pending devices",
    tags=PENDING,
    security=SECURITY,
    responses=_responses(200, "Your pending devices.", 401),
)
def list_pending() -> dict[str, Any]:
    owner_id, _ = _caller()
    result: dict[str, Any] = _registration().list_pending(owner_id)
    return result


@route(
    "DELETE",
    "/v1/pending/<id>",
    summary="Delete a pending device",
    tags=PENDING,
    security=SECURITY,
    status_code=204,
    responses=_responses(204, "Deleted.", 401, 404),
)
def delete_pending(id: str) -> None:
    owner_id, _ = _caller()
    _registration().delete_pending(owner_id, id, _source_ip())


@route(
    "POST",
    "/v1/pending/<id>/claim",
    summary="Claim a registered pending device manually",
    tags=PENDING,
    security=SECURITY,
    responses=_responses(200, "The claimed device.", 401, 404, 409),
)
def claim_pending(id: str) -> dict[str, Any]:
    owner_id, email = _caller(with_email=True)
    result: dict[str, Any] = _registration().claim_pending(owner_id, email, id, _source_ip())
    return result


@route(
    "POST",
    "/v1/pending/<id>/token",
    summary="Regenerate the registration token (revokes the old one)",
    tags=PENDING,
    security=SECURITY,
    responses=_responses(200, "The new token and device configuration.", 401, 404),
)
def regenerate_token(id: str) -> dict[str, Any]:
    owner_id, _ = _caller()
    result: dict[str, Any] = _registration().regenerate_token(
        owner_id, id, _source_ip(), api_url=_public_api_url()
    )
    return result


# --- the OpenAPI document ----------------------------------------------------------------------------


@cache
def openapi_document() -> dict[str, Any]:
    """The resolver's document for the owner routes, plus the device routes (lambdas.models.device)."""
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    from lambdas.models.device import device_openapi

    _models()

    schema = app.get_openapi_schema(
        title=TITLE,
        version=API_VERSION,
        description="Claim, watch and manage Latchkey devices (owner routes, Cognito JWT), and the device "
        "protocol (signed requests).",
        security_schemes={"bearerAuth": HTTPBearer(bearerFormat="JWT", description="Cognito token.")},
    )
    document: dict[str, Any] = schema.model_dump(mode="json", by_alias=True, exclude_none=True)
    _describe_errors_as_answered(document)
    from lambdas.models.device_rotation import rotation_openapi

    components = document.setdefault("components", {}).setdefault("schemas", {})
    for paths, schemas in (device_openapi(), rotation_openapi()):
        document.setdefault("paths", {}).update(paths)
        for name, definition in schemas.items():
            components.setdefault(name, definition)
    return document


def _describe_errors_as_answered(document: dict[str, Any]) -> None:
    """Powertools documents validation errors as its own 422 shape; this API answers them as 400 ErrorBody.

    A 401 comes from API Gateway's JWT authorizer (`{"message": "Unauthorized"}`, before the function
    runs) or from the function (ErrorBody, claims without `sub`): both shapes are documented.
    """
    error_ref = {JSON: {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    unauthorized = {
        JSON: {
            "schema": {
                "anyOf": [
                    {"$ref": "#/components/schemas/ErrorBody"},
                    {"$ref": "#/components/schemas/GatewayError"},
                ]
            }
        }
    }
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = {
                    "description": "Invalid request (`validation_error`).",
                    "content": error_ref,
                }
            if "204" in responses:
                responses["204"].pop("content", None)
            if "401" in responses:
                responses["401"]["content"] = unauthorized
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(name, None)
    from lambdas.models.common import ErrorBody, GatewayError

    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())
    schemas.setdefault("GatewayError", GatewayError.model_json_schema())


@route("GET", "/v1/openapi.json", summary="This document", tags=["meta"], cache_control="public, max-age=300")
def openapi_json() -> dict[str, Any]:
    return openapi_document()


# --- entry point -------------------------------------------------------------------------------------


def _method(event: dict[str, Any]) -> str:
    context = event.get("requestContext")
    ctx_http = context.get("http") if isinstance(context, dict) else None
    method = ctx_http.get("method") if isinstance(ctx_http, dict) else None
    return str(method or event.get("httpMethod") or "").upper()


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    try:
        # Size (413), encoding and JSON well-formedness (400) before Powertools parses the body: its
        # parser would answer too-deep nesting or too-long integers with a 500.
        raw = http.raw_body(event)
    except LatchkeyError as error:
        return http.error_response(error)
    content_type = http.header(event, "content-type") or "application/json"
    if raw and "json" in content_type.lower():  # other types: Powertools answers 415
        try:
            http.json_value(raw)
        except BadRequest as error:
            return http.error_response(ValidationFailed(error.message))
    if _method(event) not in READING:
        _models()  # a validated route: Powertools resolves its annotations on the first call
    response = app.resolve(event, context)
    headers = response.setdefault("headers", {})
    if response.get("statusCode") == 204:  # no content: not even the "null" Powertools serializes
        response["body"] = ""
        for name in [k for k in headers if k.lower() == "content-type"]:
            del headers[name]
    if not any(k.lower() == "cache-control" for k in headers):
        headers["Cache-Control"] = "no-store"
    return response
