// End-to-end tests against real switchboard servers started by the tests (test/server.mjs).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { Client, ClientError, ServerError, ErrorCode, isServerError } from "../dist/index.js";
import { startServer } from "./server.mjs";

const servers = [];
const clients = [];
async function server(opts) {
  const s = await startServer(opts);
  servers.push(s);
  return s;
}
async function client(opts) {
  const c = await Client.connect({ reconnectMinMs: 20, reconnectMaxMs: 200, ...opts });
  clients.push(c);
  return c;
}
after(async () => {
  await Promise.all(clients.map((c) => c.close(500)));
  await Promise.all(servers.map((s) => s.stop()));
});

/** Resolves when pred() holds, polling; fails after ms. */
async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test("register, send, send with ack, request and reply, echo, ping, unregister", async () => {
  const s = await server();
  const messages = [];
  const svc = await client({
    addresses: [s.addr],
    name: "svc-client",
    onMessage: (m) => messages.push(m),
    onRequest: (req) => Buffer.concat([Buffer.from("re:"), req.payload]),
  });
  await svc.register("svc");
  await svc.register("svc"); // idempotent
  assert.deepEqual(svc.registeredNames.map(String), ["svc"]);

  const caller = await client({ addresses: [s.addr], name: "caller" });
  assert.notEqual(caller.connection.connId, svc.connection.connId);
  assert.equal(caller.connection.maxFrame, 1 << 20);
  assert.equal(caller.connection.pingIntervalMs, 30000);

  await caller.send("svc", "one");
  await caller.send("svc", Buffer.from("two"), { ack: true });
  await waitFor(() => messages.length === 2, 2000, "two messages");
  assert.deepEqual(messages.map((m) => String(m.payload)), ["one", "two"]);
  assert.equal(String(messages[0].fromName), "caller");
  assert.equal(messages[0].fromConn, caller.connection.connId);

  assert.equal(String(await caller.request("svc", "hello")), "re:hello");
  // Pipelined: many requests in flight at once, matched by corr.
  const many = await Promise.all(Array.from({ length: 200 }, (_, i) => caller.request("svc", `n${i}`)));
  many.forEach((r, i) => assert.equal(String(r), `re:n${i}`));

  assert.equal(String(await caller.echo("hi!")), "hi!");
  assert.ok((await caller.ping()) >= 0);

  await svc.unregister("svc");
  await assert.rejects(caller.request("svc", "x"), (e) => isServerError(e, "NO_ROUTE"));
  await assert.rejects(svc.unregister("svc"), (e) => isServerError(e, ErrorCode.NOT_OWNER));
});

test("NO_ROUTE, NAME_TAKEN and bad names", async () => {
  const s = await server();
  const a = await client({ addresses: [s.addr] });
  const b = await client({ addresses: [s.addr] });
  await assert.rejects(a.request("nobody", "x"), (e) => e instanceof ServerError && e.codeName === "NO_ROUTE" && !e.closing);
  await assert.rejects(a.send("nobody", "x", { ack: true }), (e) => isServerError(e, "NO_ROUTE"));
  await a.send("nobody", "x"); // fire and forget: no answer at all
  await a.register("taken");
  await assert.rejects(b.register("taken"), (e) => isServerError(e, "NAME_TAKEN"));
  await assert.rejects(a.register(""), (e) => e instanceof ClientError && e.code === "BAD_ARGUMENT");
  await assert.rejects(a.request("x".repeat(256), ""), (e) => e instanceof ClientError && e.code === "BAD_ARGUMENT");
  assert.equal(String(await a.echo("still open")), "still open");
});

test("request timeout: the server's TIMEOUT; AbortSignal; replies from a promise and later", async () => {
  const s = await server();
  const held = [];
  const svc = await client({
    addresses: [s.addr],
    onRequest: async (req) => {
      const p = String(req.payload);
      if (p === "never") return undefined; // no reply: the requester gets TIMEOUT
      if (p === "later") {
        held.push(req);
        return undefined;
      }
      await sleep(5);
      return `async:${p}`;
    },
  });
  await svc.register("slow");
  const c = await client({ addresses: [s.addr] });

  const t0 = Date.now();
  await assert.rejects(c.request("slow", "never", { timeoutMs: 300 }), (e) => isServerError(e, "TIMEOUT"));
  const took = Date.now() - t0;
  assert.ok(took >= 250 && took < 2000, `TIMEOUT after ${took} ms`);

  assert.equal(String(await c.request("slow", "x")), "async:x");

  const later = c.request("slow", "later");
  await waitFor(() => held.length === 1, 2000, "the held request");
  assert.equal(held[0].reply("done later"), true);
  assert.equal(held[0].reply("twice"), false);
  assert.equal(String(await later), "done later");

  const ac = new AbortController();
  const aborted = c.request("slow", "never", { signal: ac.signal, timeoutMs: 2000 });
  setTimeout(() => ac.abort(new Error("caller gave up")), 50);
  await assert.rejects(aborted, /caller gave up/);
  const pre = AbortSignal.abort(new Error("already"));
  await assert.rejects(c.request("slow", "x", { signal: pre }), /already/);
  // The connection is still fine.
  assert.equal(String(await c.request("slow", "y")), "async:y");
});

test("reconnects after a server restart and registers its names again", async () => {
  const s1 = await server();
  const svc = await client({ addresses: [s1.addr], onRequest: (r) => `v:${r.payload}` });
  await svc.register("phoenix");

  const lost = once(svc, "disconnected");
  await s1.stop("SIGKILL");
  await lost;
  assert.equal(svc.state, "reconnecting");
  // A call made while reconnecting waits for the new connection.
  const during = svc.echo("waiting", { timeoutMs: 10000 });

  const reconnected = once(svc, "connected");
  const s2 = await server({ port: s1.port });
  await reconnected;
  assert.equal(String(await during), "waiting");
  assert.equal(svc.state, "connected");

  const c = await client({ addresses: [s2.addr] });
  assert.equal(String(await c.request("phoenix", "1")), "v:1");
});

test("GOAWAY: moves to an address from the GOAWAY and registers there", async () => {
  const b = await server();
  const a = await server({ args: ["--peers", b.addr, "--drain-period", "3s"] });
  const svc = await client({ addresses: [a.addr], onRequest: () => "from mover" });
  await svc.register("mover");
  const goaway = once(svc, "goaway");
  const moved = new Promise((r) => svc.on("connected", (info) => info.address === b.addr && r(info)));
  a.proc.kill("SIGTERM");
  const [g] = await goaway;
  assert.deepEqual(g.addresses, [b.addr]);
  await moved;
  assert.equal(svc.connection.address, b.addr);
  const c = await client({ addresses: [b.addr] });
  assert.equal(String(await c.request("mover", "?")), "from mover");
});

test("PINGs at the announced interval keep an idle connection open", async () => {
  const s = await server({ args: ["--idle-timeout", "900ms"] });
  const c = await client({ addresses: [s.addr] });
  assert.equal(c.connection.pingIntervalMs, 300);
  const id = c.connection.connId;
  let dropped = null;
  c.on("disconnected", (e) => (dropped = e));
  await sleep(2500);
  assert.equal(dropped, null);
  assert.equal(c.connection.connId, id);
  assert.equal(String(await c.echo("alive")), "alive");
});

test("max frame from WELCOME bounds what the client sends", async () => {
  const s = await server({ args: ["--max-frame", "1024"] });
  const c = await client({ addresses: [s.addr] });
  assert.equal(c.connection.maxFrame, 1024);
  await assert.rejects(c.echo(Buffer.alloc(1024)), (e) => e instanceof ClientError && e.code === "FRAME_TOO_LARGE");
  assert.equal((await c.echo(Buffer.alloc(1018))).length, 1018); // len = 6 + 1018 = 1024
  await c.register("big");
  // The server refuses a REQUEST whose INCOMING would be too large (23 + 1010 > 1024;
  // the REQUEST itself is 6 + 4 + 4 + 1010 = 1024): same corr, the connection stays open.
  await assert.rejects(c.request("big", Buffer.alloc(1010)), (e) => isServerError(e, "FRAME_TOO_LARGE"));
  assert.equal(String(await c.echo("open")), "open");
});

test("HELLO carries the token; a wrong one is refused with UNAUTHORIZED and no retry", async () => {
  const s = await server({ args: ["--token", "s3cret"] });
  await assert.rejects(Client.connect({ addresses: [s.addr], token: "wrong" }),
    (e) => isServerError(e, "UNAUTHORIZED") && e.closing && !e.reconnect);
  await assert.rejects(Client.connect({ addresses: [s.addr] }), (e) => isServerError(e, "UNAUTHORIZED"));
  const c = await client({ addresses: [s.addr], token: "s3cret" });
  assert.equal(String(await c.echo("in")), "in");
});
