// Calls a Cello app's gRPC service over Connect (@connectrpc/connect-node) or gRPC-Web (@connectrpc/connect-web's
// transport, the one browsers use, on Node's fetch), with no generated code: the service is read at run time from
// the descriptors the test passes (a FileDescriptorSet, base64).
//
//   node connect_client.mjs '<json spec>'
//
// spec: {baseUrl, descriptors, service, transport: "connect" | "grpc-web", httpVersion: "1.1" | "2", binary,
//        calls: [{method, request (a list, for a client-streaming method), headers, timeoutMs}]}
// Prints one JSON line: a result per call, {"ok": message or [messages]} or {"code", "message", "details"}.
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { createFileRegistry, fromBinary, toJson } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const spec = JSON.parse(process.argv[2]);
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, Buffer.from(spec.descriptors, "base64")));
const service = registry.getService(spec.service);
const transport =
  spec.transport === "grpc-web"
    ? createGrpcWebTransport({ baseUrl: spec.baseUrl, useBinaryFormat: spec.binary })
    : createConnectTransport({ baseUrl: spec.baseUrl, httpVersion: spec.httpVersion, useBinaryFormat: spec.binary });
const client = createClient(service, transport);

function detailsOf(error) {
  return error.details.map((detail) => {
    const schema = registry.getMessage(detail.desc ? detail.desc.typeName : detail.type);
    const found = schema ? error.findDetails(schema) : [];
    return { type: detail.desc ? detail.desc.typeName : detail.type, value: found.length ? toJson(schema, found[0]) : null };
  });
}

const results = [];
for (const call of spec.calls) {
  const method = service.method[call.method];
  const options = { headers: call.headers ?? {}, timeoutMs: call.timeoutMs };
  try {
    if (method.methodKind === "server_streaming") {
      const replies = [];
      for await (const reply of client[call.method](call.request, options)) {
        replies.push(toJson(method.output, reply));
      }
      results.push({ ok: replies });
    } else if (method.methodKind === "client_streaming") {
      async function* requests() {
        yield* call.request;
      }
      results.push({ ok: toJson(method.output, await client[call.method](requests(), options)) });
    } else {
      results.push({ ok: toJson(method.output, await client[call.method](call.request, options)) });
    }
  } catch (raised) {
    const error = ConnectError.from(raised);
    results.push({ code: Code[error.code], message: error.rawMessage, details: detailsOf(error) });
  }
}
console.log(JSON.stringify(results));
