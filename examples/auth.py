"""Token login, role and permission guards, and API keys for machine clients.

Run it with ``python examples/auth.py`` (set ``JWT_SECRET`` to at least 32 random bytes to keep tokens valid
across restarts), then try:

    TOKEN=$(curl -s -X POST http://127.0.0.1:8000/token -H 'content-type: application/json' \\
            -d '{"username": "ada", "password": "correct horse battery staple"}' | jq -r .access_token)
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/me
    curl -i -H "Authorization: Bearer $TOKEN" -X DELETE http://127.0.0.1:8000/posts/1     # ada is an editor
    curl -i http://127.0.0.1:8000/admin/stats                                              # 401
    curl -H 'X-API-Key: demo-reader-key-000000000000' http://127.0.0.1:8000/api/orders
    open http://127.0.0.1:8000/docs                                                        # Authorize, try
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

import msgspec

from cello import App, Blueprint, HTTPException
from cello.middleware import JwtAuth, JwtConfig
from cello.security import ApiKeyAuth, Permission, Role

# A real app keeps users in its database; passwords are stored as scrypt hashes, never in clear.
SALT = b"example-salt-use-one-per-user"


def hash_password(password: str) -> bytes:
    return hashlib.scrypt(password.encode(), salt=SALT, n=2**14, r=8, p=1)


USERS = {
    "ada": {"password": hash_password("correct horse battery staple"), "roles": ["editor"],
            "permissions": ["posts:write", "posts:delete"]},
    "grace": {"password": hash_password("a different long passphrase"), "roles": ["admin"], "permissions": []},
}  # fmt: skip
POSTS = {1: "Hello", 2: "Second post"}

jwt_config = JwtConfig(secret=os.environ.get("JWT_SECRET", "").encode() or secrets.token_bytes(32), issuer="auth-demo")
app = App()


class Login(msgspec.Struct):
    username: str
    password: str


@app.post("/token")
def login(credentials: Login):
    """Exchange a user name and password for an access token."""
    user = USERS.get(credentials.username)
    supplied = hash_password(credentials.password)
    if user is None or not hmac.compare_digest(supplied, user["password"]):
        raise HTTPException(401, "Wrong user name or password.", headers={"www-authenticate": "Bearer"})
    claims = {"sub": credentials.username, "roles": user["roles"], "permissions": user["permissions"]}
    return {"access_token": jwt_config.create_token(claims, expires_in=900), "token_type": "bearer"}


users = Blueprint("", name="users")
users.use(JwtAuth(jwt_config))


@users.get("/me")
def me(request):
    """Who the token says you are."""
    return {"user": request.user.id, "roles": sorted(request.user.roles)}


@users.delete("/posts/{post_id:int}", guards=[Role("admin") | (Role("editor") & Permission("posts:delete"))])
def delete_post(post_id: int):
    """Admins, and editors allowed to delete, may remove a post."""
    if POSTS.pop(post_id, None) is None:
        raise HTTPException(404, "No such post.")
    return {"deleted": post_id}


@users.get("/admin/stats", guards=[Role("admin")])
def stats():
    return {"posts": len(POSTS), "users": len(USERS)}


app.register_blueprint(users)

# Machine clients: API keys with scopes (a real app reads them from its secret store).
api = Blueprint("/api", name="api")
api.use(ApiKeyAuth({"demo-reader-key-000000000000": ["orders:read"],
                    "demo-writer-key-000000000000": ["orders:read", "orders:write"]}))  # fmt: skip
ORDERS: list[dict] = []


@api.get("/orders", guards=[Permission("orders:read")])
def list_orders():
    return ORDERS


@api.post("/orders", guards=[Permission("orders:write")])
def create_order(item: str):
    ORDERS.append({"id": len(ORDERS) + 1, "item": item})
    return ORDERS[-1]


app.register_blueprint(api)

if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")))
