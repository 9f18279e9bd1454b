"""The OpenAPI document of the gateway's endpoints, built from the wire models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel


class Documented(Protocol):
    """What an endpoint says about itself for this document."""

    wire_model: type[BaseModel]
    operation_id: str
    answer: str  # the 200 response's description


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_document(version: str, endpoints: Mapping[str, Documented]) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for endpoint in endpoints.values():
        schema = endpoint.wire_model.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}"
        )
        components.update(schema.pop("$defs", {}))
        components[endpoint.wire_model.__name__] = schema
    errors = {
        "400": _error("The request is invalid; the message names the parameter."),
        "401": _error("Missing or incorrect API key."),
        "404": _error("Unknown model, or the key may not use it."),
        "413": _error("The body is larger than the configured limit."),
        "429": _error("A per-key rate limit was reached; see Retry-After."),
        "502": _error("The upstream failed."),
        "503": _error("No healthy upstream; see Retry-After."),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Confidential gateway", "version": version},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            **{path: _operation(e, errors) for path, e in endpoints.items()},
            "/v1/models": {
                "get": {
                    "operationId": "listModels",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": {
                            "description": "Models this key may use.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "401": errors["401"],
                    },
                }
            },
            "/v1/attestation": {
                "get": {
                    "operationId": "getAttestation",
                    "parameters": [
                        {
                            "name": "nonce",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "pattern": "^(?:[0-9a-fA-F]{2}){8,64}$"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "Evidence binding the key set and the nonce.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": errors["400"],
                        "503": errors["503"],
                    },
                }
            },
            "/v1/attestations/{completion_id}": {
                "get": {
                    "operationId": "getResponseToken",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "completion_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The token of a recent response of this key.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "401": errors["401"],
                        "404": errors["404"],
                    },
                }
            },
            "/.well-known/jwks.json": {
                "get": {
                    "operationId": "getSigningKeys",
                    "responses": {"200": {"description": "The response-signing key."}},
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "responses": {"200": {"description": "The process is alive."}},
                }
            },
            "/ready": {
                "get": {
                    "operationId": "ready",
                    "responses": {
                        "200": {
                            "description": "Every model has a healthy upstream (per model "
                            "only with a key, for the models it may use)."
                        },
                        "401": errors["401"],
                        "503": {"description": "Some model has no healthy upstream."},
                    },
                }
            },
        },
    }


def _operation(endpoint: Documented, errors: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "operationId": endpoint.operation_id,
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{endpoint.wire_model.__name__}"}
                    }
                },
            },
            "responses": {
                "200": {
                    "description": endpoint.answer,
                    "content": {
                        "application/json": {"schema": {"type": "object"}},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                **errors,
            },
        }
    }
