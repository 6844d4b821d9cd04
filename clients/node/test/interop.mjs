// The TypeScript half of internal/e2e's TestTypeScriptClientInterop (run by the Go test,
// not by node --test): connects to ADDR with TOKEN, serves "ts-svc" (replies "ts:" + the
// payload), prints "ready", makes COUNT requests to the Go client's "go-svc" and checks
// the replies, prints "requests ok COUNT", then stays until stdin closes.
//
//   node test/interop.mjs ADDR TOKEN COUNT
import { Client } from "../dist/index.js";

const [addr, token, count] = process.argv.slice(2);
const c = await Client.connect({
  addresses: [addr],
  token,
  name: "ts-client",
  onRequest: (req) => Buffer.concat([Buffer.from("ts:"), req.payload]),
});
await c.register("ts-svc");
console.log("ready");

const n = Number(count);
const got = await Promise.all(Array.from({ length: n }, (_, i) => c.request("go-svc", `q${i}`)));
got.forEach((r, i) => {
  if (String(r) !== `go:q${i}`) throw new Error(`request ${i}: got ${JSON.stringify(String(r))}`);
});
console.log(`requests ok ${n}`);

process.stdin.resume();
process.stdin.on("end", async () => {
  await c.close();
  console.log("closed");
});
