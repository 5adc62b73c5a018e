"""Authentication and guards on one app, served on every face by the tests (JWT HS and RS, Basic, API keys)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cello import App, Blueprint
from cello.middleware import JwtAuth, JwtConfig
from cello.security import ApiKeyAuth, Authenticated, BasicAuth, Permission, Role

KEYS = Path(__file__).resolve().parent / "keys"
SECRET = b"security-app-test-secret-of-32-bytes-or-more"
ISSUER = "https://issuer.example"
AUDIENCE = "cello-tests"

hs_config = JwtConfig(secret=SECRET, issuer=ISSUER, audience=AUDIENCE, cookie="access_token")
rs_config = JwtConfig(
    private_key=(KEYS / "rsa_private.pem").read_bytes(),
    public_key=(KEYS / "rsa_public.pem").read_bytes(),
    algorithms=["RS256"],
)
API_KEYS = {
    "reader-key-0123456789abcdef": ["orders:read"],
    "writer-key-0123456789abcdef": ["orders:read", "orders:write"],
}

app = App()


@app.get("/__ready")
def ready():
    return "ok"


@app.get("/open")
def open_route():
    return {"open": True}


# -- JWT (HS256, with issuer and audience; also from a cookie) ------------------------------------------------

jwt_bp = Blueprint("/jwt")
jwt_bp.use(JwtAuth(hs_config))


@jwt_bp.get("/me")
def me(request):
    claims = request.context.get("jwt_claims")
    return {"user": claims["sub"], "role": claims.get("role"), "id": request.user.id}


@jwt_bp.get("/admin", guards=[Role("admin")])
async def jwt_admin(request):
    return {"admin": request.user.id}


@jwt_bp.post("/posts", guards=[Role("editor") & Permission("posts:write")])
async def write_post(request):
    return {"written": True}


app.register_blueprint(jwt_bp)

# -- JWT (RS256 public key: the algorithm-confusion target) ---------------------------------------------------

rs_bp = Blueprint("/rs")
rs_bp.use(JwtAuth(rs_config))


@rs_bp.get("/me")
def rs_me(request):
    return {"user": request.user.id}


app.register_blueprint(rs_bp)

# -- guards over an optional authenticator ----------------------------------------------------------------------

guarded = Blueprint("/g")
guarded.use(JwtAuth(JwtConfig(secret=SECRET, issuer=ISSUER, audience=AUDIENCE, optional=True)))


def is_self(request):
    return request.user is not None and request.user.id == request.params["name"]


async def business_hours(request):
    await asyncio.sleep(0)
    return request.headers.get("x-hour", "12") in {str(h) for h in range(9, 18)}


def broken(request):
    raise RuntimeError("a bug in a guard")


@guarded.get("/anyone")
def anyone(request):
    return {"user": request.user.id if request.user else None}


@guarded.get("/admin", guards=[Role("admin")])
def g_admin():
    return {"ok": "admin"}


@guarded.get("/staff", guards=[Role("admin") | Role("staff")])
def g_staff():
    return {"ok": "staff"}


@guarded.get("/not-banned", guards=[Authenticated() & ~Role("banned")])
def g_not_banned():
    return {"ok": "not banned"}


@guarded.get("/users/{name}", guards=[Role("admin") | is_self])
def g_user(name: str):
    return {"ok": name}


@guarded.get("/hours", guards=[Authenticated() & business_hours])
def g_hours():
    return {"ok": "open"}


@guarded.get("/broken", guards=[broken])
def g_broken():
    return {"ok": "never"}


@guarded.get("/public", public=True, guards=[Role("admin")])
def g_public():
    return {"ok": "public"}


app.register_blueprint(guarded)

# -- an admin area guarded on the route, for path tricks --------------------------------------------------------


@app.route("/admin", ["GET", "POST"], middleware=[JwtAuth(hs_config)], guards=[Role("admin")])
def admin_area(request):
    return {"area": "admin", "method": request.method}


@app.get("/admin/{page}", middleware=[JwtAuth(hs_config)], guards=[Role("admin")])
def admin_page(page: str):
    return {"area": "admin", "page": page}


# -- Basic and API keys -------------------------------------------------------------------------------------------

basic = Blueprint("/basic")
basic.use(BasicAuth(users={"alice": "wonderland-password"}, roles={"alice": ["admin"]}, realm="Cello tests"))


@basic.get("/me")
def basic_me(request):
    return {"user": request.user.id, "roles": sorted(request.user.roles)}


app.register_blueprint(basic)


async def lookup_user(username, password):
    await asyncio.sleep(0)
    if username == "bob" and password == "builder-password":
        return {"id": "bob", "roles": ["staff"]}
    return None


basic_db = Blueprint("/basic-db")
basic_db.use(BasicAuth(verify=lookup_user))


@basic_db.get("/me", guards=[Role("staff")])
def basic_db_me(request):
    return {"user": request.user.id}


app.register_blueprint(basic_db)

keys = Blueprint("/orders")
keys.use(ApiKeyAuth(API_KEYS, query="api_key"))


@keys.get("/", guards=[Permission("orders:read")])
def list_orders(request):
    return {"orders": [], "caller": request.user.id}


@keys.post("/", guards=[Permission("orders:write")])
def create_order():
    return {"created": True}


app.register_blueprint(keys)
