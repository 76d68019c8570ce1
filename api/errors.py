"""OpenWhisk's error texts and the {"error", "code"} body."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from aiohttp import web

from contracts.errors import WhiskError

NOT_FOUND = "The requested resource does not exist."
AUTH_INVALID = "The supplied authentication is invalid"
AUTH_MISSING = "The resource requires authentication, which was not supplied with the request"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, DELETE, POST, PUT, HEAD",
    "Access-Control-Allow-Headers": "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent",
}


def malformed(detail: str) -> WhiskError:
    return WhiskError(400, f"The request content was malformed:\n{detail}")


def method_not_allowed(allowed: Sequence[str]) -> WhiskError:
    """Pekko's answer to a MethodRejection: the supported methods in the text and in an `Allow` header."""
    methods = ", ".join(allowed)
    return WhiskError(405, f"HTTP method not allowed, supported methods: {methods}", {"Allow": methods})


def no_json_value(blank: str) -> WhiskError:
    """spray-json's text for a body with no JSON value (empty or whitespace): the end of the input, with its
    line (control characters as '?') and a caret under the position."""
    line = blank.rpartition("\n")[2]
    col = len(line) + 1
    shown = line.replace("\t", "?").replace("\r", "?")
    where = f"input index {len(blank)} (line {blank.count(chr(10)) + 1}, position {col})"
    return malformed(f"Unexpected end-of-input at {where}, expected JSON Value:\n{shown}\n{' ' * (col - 1)}^\n")


def not_authorized(path: str) -> WhiskError:
    return WhiskError(403, f"The supplied authentication is not authorized to access '{path}'.")


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def error_response(status: int, message: str, tid: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": message, "code": tid}, status, headers)
