"""JWT verified against a JWKS fetched over HTTP (its URL in CELLO_TEST_JWKS_URL), for the key-rotation test."""

from __future__ import annotations

import os

from cello import App
from cello.security import JwtAuth, JwtConfig

app = App()
app.use(
    JwtAuth(
        JwtConfig(
            jwks=os.environ["CELLO_TEST_JWKS_URL"],
            algorithms=["RS256", "ES256"],
            jwks_min_refresh=0.2,
            jwks_ttl=float(os.environ.get("CELLO_TEST_JWKS_TTL", "300")),
        ),
        exclude_paths=["/__ready"],
    )
)


@app.get("/__ready")
def ready():
    return "ok"


@app.get("/me")
def me(request):
    return {"user": request.user.id, "kid": request.context["jwt_claims"].get("kid")}
