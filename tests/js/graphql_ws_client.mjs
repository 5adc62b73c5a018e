// A graphql-transport-ws client (the npm graphql-ws package, as browsers and Node apps use it) against a live
// server: node graphql_ws_client.mjs ws://host:port/graphql
// It subscribes, runs a query over the same socket, answers the server's pings, and prints one JSON line.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const url = process.argv[2];
let pings = 0;
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { token: "node" },
  retryAttempts: 0,
  on: { ping: (received) => { if (received) pings += 1; } },
});

function collect(payload) {
  return new Promise((resolve, reject) => {
    const results = [];
    client.subscribe(payload, {
      next: (value) => results.push(value),
      error: (error) => reject(error instanceof Error ? error : new Error(JSON.stringify(error))),
      complete: () => resolve(results),
    });
  });
}

try {
  const countdown = await collect({ query: "subscription { countdown(start: 3) }" });
  const query = await collect({ query: "{ hello(name: \"node\") }" });
  // a quiet subscription keeps the socket open (the client closes an idle one): the server pings every 0.2 s
  const stop = client.subscribe({ query: "subscription { quiet }" }, { next: () => {}, error: () => {}, complete: () => {} });
  await new Promise((resolve) => setTimeout(resolve, 700));
  stop();
  console.log(JSON.stringify({ countdown, query, pings }));
} finally {
  await client.dispose();
}
