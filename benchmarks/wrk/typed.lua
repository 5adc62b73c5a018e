-- POST /items/42?limit=5 with a small JSON document: the typed-route scenario
-- (path int + query + validated body + one dependency). wrk runs with its
-- working directory set to this folder, so the body file is found by name;
-- the harness checks each server's reply against the same file.
local f = assert(io.open("typed_body.json", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
