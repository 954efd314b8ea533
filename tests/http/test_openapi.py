"""The OpenAPI document: valid 3.1, generated for every route the app serves, and
what it says about bodies is what the routes send."""

from __future__ import annotations

import re

import httpx
import jsonschema_rs
import msgspec
import schemathesis
from conftest import Served

from workyard import Settings
from workyard.http._openapi import FOREIGN_PREFIXES, OPERATIONS, UNDOCUMENTED, openapi
from workyard.hub import Hub
from workyard.protocol import TaskSpec
from workyard.server import build_app


def served_routes() -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every rule of the app, but HEAD and OPTIONS."""
    app = build_app(Hub(), Settings())
    routes = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        if path.startswith(FOREIGN_PREFIXES):
            continue
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            routes.add((method, path))
    return routes


def test_every_route_of_the_app_is_documented_and_nothing_else() -> None:
    documented = {(op.method, op.path) for op in OPERATIONS}
    assert served_routes() - UNDOCUMENTED == documented


def test_the_document_is_valid_openapi_3_1_with_json_schema_2020_12_components() -> None:
    document = openapi()
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()  # the OpenAPI 3.1 meta-schema
    for name, schema in document["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_component_schemas_are_the_structs_the_routes_encode() -> None:
    """A struct's schema is msgspec's, not written by hand: a field added to the
    struct shows up in the document."""
    schemas = openapi()["components"]["schemas"]
    fields = {f.encode_name for f in msgspec.structs.fields(TaskSpec)}
    assert set(schemas["TaskSpec"]["properties"]) == fields
    assert schemas["TaskSpec"]["properties"]["priority"]["maximum"] == 2**63 - 1
    assert set(schemas["WorkerView"]["required"]) >= {"id", "transport", "outstanding"}


def test_with_tokens_every_operation_with_a_role_lists_its_security() -> None:
    document = openapi(auth_enabled=True)
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            assert ("security" in op) == ("x-role" in op), (method, path)


async def test_the_served_document_and_the_docs_page_answer(server: Served,
                                                           http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    assert document == msgspec.json.decode(msgspec.json.encode(openapi()))
    docs = await http.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
