"""A program written only from the reference API's documentation (the published "Cello" 1.x), as a user
migrating from it writes one: every ``enable_*`` with the reference's own keywords, ``app.render`` returning text,
``add_guard``, ``register_singleton``, ``app.invalidate_cache(tags=...)`` (tests/test_reference_api.py)."""

from __future__ import annotations

import os

from cello import App, HealthCheckConfig, OpenTelemetryConfig, Response
from cello.middleware import cache

app = App()
app.enable_cors(origins=["https://shop.example"])
app.enable_compression(min_size=100)
app.enable_prometheus(endpoint="/metrics", namespace="shop", subsystem="http")
app.enable_caching(ttl=60, methods=["GET"], exclude_paths=["/time"])
app.enable_circuit_breaker(failure_threshold=2, reset_timeout=30, half_open_target=1, failure_codes=[500, 503])
app.enable_templates(
    template_dir=os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference_templates"),
    auto_escape=True,
    globals={"site": "Shop"},
)
app.enable_openapi(title="Shop API", version="2.0.0")
app.enable_health_checks(HealthCheckConfig(base_path="/health", include_system_info=True, version="2.0.0"))
app.enable_telemetry(OpenTelemetryConfig(service_name="shop", service_version="2.0.0", sampling_rate=1.0))


def no_banned_clients(request):
    return request.headers.get("x-client") != "banned"


app.add_guard(no_banned_clients)

USERS = {"1": {"id": 1, "name": "Ada"}}
app.register_singleton("users", USERS)
calls = {"price": 0}


@app.get("/__ready")
def ready(request):
    return "ok"


@app.get("/users/{id}")
def get_user(request, users):
    user = users.get(request.params["id"])
    return user if user is not None else Response.json({"error": "no such user"}, status=404)


@app.get("/page")
def page(request):
    return Response.html(app.render("page.html", {"title": "<Welcome>"}))


@app.get("/greeting")
def greeting(request):
    return Response.text(app.render_string("Hello, {{ name }}!", {"name": request.query.get("name", "you")}))


@app.get("/price")
@cache(ttl=60, tags=["prices"])
def price(request):
    calls["price"] += 1
    return {"price": 10, "computed": calls["price"]}


@app.get("/time")
def time_now(request):
    calls["price"] += 0
    return {"calls": calls["price"]}


@app.post("/prices/refresh")
def refresh(request):
    app.invalidate_cache(tags=["prices"])
    return Response.json({"refreshed": True})


@app.get("/flaky")
def flaky(request):
    raise RuntimeError("this route keeps failing")


@app.get("/big")
def big(request):
    return {"items": ["x" * 20] * 50}


@app.get("/trace")
def trace(request):
    from cello.telemetry import inject

    return inject()  # the trace this request is part of, as the next service would receive it
