"""Cello serving the benchmark's Greeter (grpc_greeter.py): native gRPC on the port ``cello run --grpc-port``
gives, Connect and gRPC-Web on the HTTP port, with Cello's defaults."""

from __future__ import annotations

from grpc_greeter import Greeter

from cello import App

app = App()
app.grpc_service(Greeter())


@app.get("/")
def index() -> dict[str, str]:
    return {"grpc": "greeter.v1.Greeter"}
