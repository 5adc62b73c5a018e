-- GET /stack with an Origin header, so the CORS middleware of the stack scenario does its full work.
wrk.headers["Origin"] = "https://app.example"
