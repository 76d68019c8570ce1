"""A minimal OpenAPI description of the endpoints served (the full swagger port is future work)."""

from __future__ import annotations

from typing import Any

ERROR = {"type": "object", "properties": {"error": {"type": "string"}, "code": {"type": "string"}}}


def spec() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for coll in ("actions", "triggers", "rules", "packages"):
        paths[f"/namespaces/{{namespace}}/{coll}"] = {"get": {"summary": f"List {coll}"}}
        paths[f"/namespaces/{{namespace}}/{coll}/{{name}}"] = {
            m: {"summary": f"{m.upper()} one of {coll}"} for m in ("get", "put", "delete", "post")
        }
    paths["/namespaces/{namespace}/activations"] = {"get": {"summary": "List activations"}}
    paths["/namespaces/{namespace}/activations/{id}"] = {"get": {"summary": "Get an activation"}}
    return {
        "swagger": "2.0", "basePath": "/api/v1",
        "info": {"title": "Streamwhisk (OpenWhisk REST API)", "version": "1.0.0"},
        "securityDefinitions": {"basicAuth": {"type": "basic"}},
        "definitions": {"ErrorMessage": ERROR},
        "paths": paths,
    }
