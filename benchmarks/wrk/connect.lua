-- A Connect unary call: POST /greeter.v1.Greeter/SayHello with its JSON request (benchmarks/grpc.py).
wrk.method = "POST"
wrk.body = '{"name":"World"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Connect-Protocol-Version"] = "1"
