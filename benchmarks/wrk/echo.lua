-- POST /echo with a ~1 KB JSON document. wrk runs with its working
-- directory set to this folder, so the body file is found by name; the
-- harness checks each server's reply against the same file.
local f = assert(io.open("echo_body.json", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
