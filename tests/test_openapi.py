"""The OpenAPI 3.1 document: valid, complete, and served with its documentation pages and assets."""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import msgspec
import orjson
import pydantic
import pytest
from openapi_spec_validator import validate

from cello import App, Blueprint, Body, Depends, EventSourceResponse, Header, OpenAPIConfig, Query, UploadFile
from cello.dto.errors import ValidationErrorFormat
from cello.testing import TestClient


class Pet(msgspec.Struct):
    name: str
    age: int = 0


class Owner(pydantic.BaseModel):
    name: str
    pets: list[str] = []


def auth(x_api_key: str = Header()):
    return x_api_key


def build() -> App:
    app = App(openapi=OpenAPIConfig(title="Pets", version="2.0", description="All the pets.",
                                    servers=[{"url": "https://pets.example"}]))  # fmt: skip
    pets = Blueprint("/pets", name="pets")

    @pets.get("/")
    def list_pets(limit: Annotated[int, Query(ge=1, le=50, description="Page size")] = 10) -> list[Pet]:
        """List the pets.

        Newest first.
        """
        return [Pet("rex")]

    @pets.get("/{pet_id:int}")
    def get_pet(pet_id: int, key=Depends(auth)) -> Pet:
        return Pet("rex", pet_id)

    @pets.post("/", status_code=201, tags=["pets", "write"])
    def create_pet(pet: Pet) -> Pet:
        return pet

    app.register_blueprint(pets)

    @app.post("/owners", summary="Create an owner", deprecated=True)
    async def create_owner(owner: Owner) -> Owner:
        return owner

    @app.post("/avatar")
    async def avatar(image: UploadFile, caption: str | None = None):
        return {"size": image.size}

    @app.post("/embed")
    def embed(a: int = Body(embed=True), b: str = Body("x", embed=True)):
        return {"a": a, "b": b}

    @app.delete("/pets/{pet_id:int}")
    def delete_pet(pet_id: int) -> None:
        return None

    @app.get("/hidden", include_in_schema=False)
    def hidden():
        return {}

    @app.get("/raw/{name}")
    def raw(request):
        return request.params

    return app


@pytest.fixture(scope="module")
def document():
    return build().openapi()


def test_document_is_valid_openapi_31(document):
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["info"] == {"title": "Pets", "version": "2.0", "description": "All the pets."}
    assert document["servers"] == [{"url": "https://pets.example"}]


def test_paths_and_hidden_routes(document):
    assert set(document["paths"]) == {"/pets", "/pets/{pet_id}", "/owners", "/avatar", "/embed", "/raw/{name}"}


def test_query_parameter_with_constraints(document):
    operation = document["paths"]["/pets"]["get"]
    assert operation["summary"] == "List the pets."
    assert operation["description"] == "Newest first."
    assert operation["tags"] == ["pets"]
    (limit,) = operation["parameters"]
    assert limit == {"name": "limit", "in": "query", "required": False, "description": "Page size",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10}}  # fmt: skip
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"type": "array", "items": {"$ref": "#/components/schemas/Pet"}}


def test_dependency_parameters_are_documented(document):
    parameters = document["paths"]["/pets/{pet_id}"]["get"]["parameters"]
    by_name = {p["name"]: p for p in parameters}
    assert by_name["pet_id"]["in"] == "path"
    assert by_name["pet_id"]["schema"]["type"] == "integer"
    assert by_name["x-api-key"]["in"] == "header"
    assert by_name["x-api-key"]["required"] is True


def test_bodies_and_status(document):
    create = document["paths"]["/pets"]["post"]
    assert create["tags"] == ["pets", "write"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Pet"}
    assert "201" in create["responses"]
    owner = document["paths"]["/owners"]["post"]
    assert owner["deprecated"] is True
    assert owner["summary"] == "Create an owner"
    assert owner["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Owner"}
    schemas = document["components"]["schemas"]
    assert schemas["Pet"]["required"] == ["name"]
    assert schemas["Owner"]["properties"]["pets"]["type"] == "array"


def test_upload_and_embedded_bodies(document):
    avatar = document["paths"]["/avatar"]["post"]
    form = avatar["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["image"] == {"type": "string", "format": "binary"}
    assert form["required"] == ["image"]
    embedded = document["paths"]["/embed"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert embedded["properties"] == {"a": {"type": "integer"}, "b": {"type": "string"}}
    assert embedded["required"] == ["a"]


def test_error_responses(document):
    responses = document["paths"]["/pets/{pet_id}"]["get"]["responses"]
    assert responses["422"]["content"]["application/problem+json"]["schema"]["$ref"].endswith("/ValidationProblem")
    assert responses["default"]["content"]["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
    assert document["paths"]["/pets/{pet_id}"]["delete"]["responses"].keys() >= {"204"}


def test_template_only_path_params(document):
    (name,) = document["paths"]["/raw/{name}"]["get"]["parameters"]
    assert name == {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}


def test_custom_validation_envelope_is_served_and_described():
    schema = {"type": "object", "properties": {"problems": {"type": "array"}}, "required": ["problems"]}
    app = App(validation_errors=ValidationErrorFormat(
        status=400, media_type="application/json",
        render=lambda errors, instance: {"problems": [e["loc"] for e in errors]}, schema=schema,
    ))  # fmt: skip

    @app.get("/")
    def handler(n: int):
        return n

    document = app.openapi()
    validate(document)
    response = document["paths"]["/"]["get"]["responses"]["400"]
    assert response["content"]["application/json"]["schema"]["$ref"].endswith("/ValidationProblem")
    assert document["components"]["schemas"]["ValidationProblem"] == schema
    with TestClient(app) as client:
        answer = client.get("/?n=x")
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"problems": [["query", "n"]]}


def test_served_document_and_pages():
    app = build()
    with TestClient(app) as client:
        served = client.get("/openapi.json")
        assert served.headers["content-type"] == "application/json"
        assert served.json() == orjson.loads(orjson.dumps(app.openapi()))
        docs = client.get("/docs")
        assert docs.headers["content-type"].startswith("text/html")
        assert "/docs/assets/swagger-ui-bundle.js" in docs.text and "/openapi.json" in docs.text
        redoc = client.get("/redoc")
        assert "/docs/assets/redoc.standalone.js" in redoc.text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js",
                      "redoc.standalone.js"):  # fmt: skip
            response = client.get(f"/docs/assets/{asset}")
            assert response.status_code == 200, asset
            assert len(response.content) > 1000
        assert client.get("/docs/assets/../../etc/passwd").status_code == 404
        assert client.get("/docs/assets/other.js").status_code == 404


def test_paths_are_configurable_and_can_be_off():
    app = App(openapi=OpenAPIConfig(openapi_url="/api/schema.json", docs_url="/api/docs", redoc_url=None))
    with TestClient(app) as client:
        assert client.get("/api/schema.json").status_code == 200
        assert "/api/schema.json" in client.get("/api/docs").text
        assert client.get("/redoc").status_code == 404
        assert client.get("/openapi.json").status_code == 404
    with TestClient(App(openapi=False)) as client:
        assert client.get("/openapi.json").status_code == 404
        assert client.get("/docs").status_code == 404


def test_cli_prints_the_document(tmp_path):
    module = tmp_path / "petsapp.py"
    module.write_text(
        "from cello import App\napp = App()\n@app.get('/x/{n:int}')\ndef x(n: int) -> int:\n    return n\n"
    )
    result = subprocess.run([sys.executable, "-m", "cello", "openapi", "petsapp:app"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    document = orjson.loads(result.stdout)
    validate(document)
    assert document["paths"]["/x/{n}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "integer"
    }


def test_object_values_are_any_json_value():
    app = App()

    @app.post("/echo")
    async def echo(payload: dict[str, object]):
        return payload

    schema = app.openapi()["paths"]["/echo"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["type"] == "object"
    assert set(schema["additionalProperties"]["type"]) == {"object", "array", "string", "number", "boolean", "null"}


def test_optional_parameters_are_documented_without_null():
    # a query string or a header cannot carry null: leaving the parameter out is how None arrives
    app = App()

    @app.get("/items")
    def items(limit: int | None = None, x_count: Annotated[int | None, Header()] = None):
        return []

    parameters = {p["name"]: p for p in app.openapi()["paths"]["/items"]["get"]["parameters"]}
    assert parameters["limit"]["schema"] == {"type": "integer"}
    assert parameters["x-count"]["schema"] == {"type": "integer"}
    assert not parameters["limit"]["required"]


def test_event_streams_and_health_checks_document_their_media_types():
    app = App()
    app.enable_health_checks()

    @app.get("/events")
    async def events() -> EventSourceResponse:
        return EventSourceResponse(iter(()))

    paths = app.openapi()["paths"]
    assert list(paths["/events"]["get"]["responses"]["200"]["content"]) == ["text/event-stream"]
    assert list(paths["/health/ready"]["get"]["responses"]["200"]["content"]) == ["application/json"]
