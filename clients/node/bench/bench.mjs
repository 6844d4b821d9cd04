// The TypeScript side of the client benchmark (run.sh): keeps N requests in flight through
// one Client for a duration against an echo responder and prints one JSON line.
//
//   node bench/bench.mjs --addr 127.0.0.1:7400 --name echo --concurrency 64 --duration 10 --size 64
import { parseArgs } from "node:util";
import { Client } from "../dist/index.js";

const { values: o } = parseArgs({
  options: {
    addr: { type: "string", default: "127.0.0.1:7400" },
    name: { type: "string", default: "echo" },
    concurrency: { type: "string", default: "64" },
    duration: { type: "string", default: "10" }, // seconds
    size: { type: "string", default: "64" },
  },
});
const conc = Number(o.concurrency);
const size = Number(o.size);
const c = await Client.connect({ addresses: [o.addr], name: "bench-ts" });
const payload = Buffer.alloc(size);
let done = 0;
let failed = 0;
const errorsByKind = {};
const start = performance.now();
const stop = start + Number(o.duration) * 1000;
async function worker() {
  while (performance.now() < stop) {
    try {
      await c.request(o.name, payload);
      done++;
    } catch (e) {
      failed++;
      const kind = e.codeName ?? e.code ?? e.name;
      errorsByKind[kind] = (errorsByKind[kind] ?? 0) + 1;
    }
  }
}
await Promise.all(Array.from({ length: conc }, worker));
const seconds = (performance.now() - start) / 1000;
await c.close();
console.log(JSON.stringify({
  client: "typescript", concurrency: conc, size, requests: done, errors: failed, errors_by_kind: errorsByKind, seconds,
  requests_per_second: done / seconds,
}));
