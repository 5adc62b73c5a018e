-- POST /raw-items/42?limit=5: the typed-route request, to a route that reads it by hand
-- (path int + query + validated body + one dependency). wrk runs with its
-- working directory set to this folder, so the body file is found by name;
-- the harness checks each server's reply against the same file.
local f = assert(io.open("typed_body.json", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
