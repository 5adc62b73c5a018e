"""A bare RSGI WebSocket echo, no framework: the engine's own ceiling for benchmarks/ws.py."""


async def app(scope, proto):
    if scope.proto != "ws":
        proto.response_str(200, [("content-type", "application/json")], '{"message":"Hello, World!"}')
        return
    transport = await proto.accept()
    while True:
        message = await transport.receive()
        if message.kind == 0:
            break
        await transport.send_str(message.data)
    proto.close(1000)
