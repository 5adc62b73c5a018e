"""Baseline: a bare RSGI callable served by granian, with no framework at all.

It answers the same scenarios as the framework apps, with the least work
possible, so it marks the ceiling that any framework on granian can reach.
"""

import orjson

JSON = [("content-type", "application/json")]
TEXT = [("content-type", "text/plain")]
HELLO = orjson.dumps({"message": "Hello, World!"})
NOT_FOUND = b"Not Found"


async def app(scope, proto):
    if scope.proto != "http":
        return
    method, path = scope.method, scope.path
    if method == "GET":
        if path == "/":
            proto.response_bytes(200, JSON, HELLO)
            return
        if path.startswith("/users/"):
            user_id = path[7:]
            if user_id and "/" not in user_id:
                proto.response_bytes(200, JSON, orjson.dumps({"id": user_id}))
                return
    elif method == "POST" and path == "/echo":
        body = await proto()
        proto.response_bytes(200, JSON, orjson.dumps(orjson.loads(body)))
        return
    proto.response_bytes(404, TEXT, NOT_FOUND)
