// Client behaviour against a scripted fake server (node:net): backpressure, unknown error
// codes, closing errors, TRY_OTHER, corr allocation and backoff.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import {
  Client, ClientError, CorrAllocator, ErrorFlag, FrameReader, FrameType, ServerError, backoffMs, decode, encode,
} from "../dist/index.js";

const cleanups = [];
after(async () => {
  for (const f of cleanups.reverse()) await f();
});

/**
 * A fake node: answers HELLO with WELCOME (fields from `welcome`) and hands every later
 * frame to onFrame(frame, send, socket).
 */
async function fakeServer({ welcome = {}, onFrame = () => {}, onConnect } = {}) {
  const sockets = new Set();
  const srv = net.createServer((sock) => {
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    sock.on("error", () => {});
    const send = (f) => sock.write(encode(f));
    if (onConnect && onConnect(sock, send) === false) return;
    const r = new FrameReader(64 << 20);
    let welcomed = false;
    sock.on("data", (chunk) => {
      r.push(chunk);
      for (let raw = r.next(); raw; raw = r.next()) {
        const f = decode(raw);
        if (!welcomed && f.type === FrameType.HELLO) {
          welcomed = true;
          send({
            type: FrameType.WELCOME, corr: f.corr, version: 1, connId: 42n, maxFrame: 1 << 20,
            pingIntervalMs: 0, maxPending: 1000, serverId: "fake", ...welcome,
          });
          continue;
        }
        if (f.type === FrameType.GOODBYE) {
          sock.end();
          continue;
        }
        onFrame(f, send, sock);
      }
    });
  });
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const s = {
    addr: `127.0.0.1:${srv.address().port}`,
    sockets,
    async close() {
      for (const so of sockets) so.destroy();
      srv.close();
    },
  };
  cleanups.push(() => s.close());
  return s;
}

async function connect(opts) {
  const c = await Client.connect({ reconnectMinMs: 10, reconnectMaxMs: 50, ...opts });
  cleanups.push(() => c.close(200));
  return c;
}

test("CorrAllocator skips 0 and corrs in use", () => {
  const a = new CorrAllocator(0xfffffffe);
  const inUse = new Set([2]);
  assert.equal(a.next(inUse), 0xffffffff);
  assert.equal(a.next(inUse), 1); // wrapped past 0
  assert.equal(a.next(inUse), 3); // 2 is in use
});

test("backoff is jittered within [min, min(max, min·2^(n+1))]", () => {
  for (let n = 0; n < 12; n++) {
    for (let i = 0; i < 50; i++) {
      const d = backoffMs(100, 5000, n);
      assert.ok(d >= 100 && d <= Math.min(5000, 100 * 2 ** (n + 1)), `attempt ${n}: ${d}`);
    }
  }
});

test("the write queue is bounded: a socket that does not drain makes writes fail, then recovers", async (t) => {
  const s = await fakeServer({ onFrame: () => {} });
  const c = await connect({ addresses: [s.addr], maxWriteQueueBytes: 1 << 20 });
  const [sock] = s.sockets;
  sock.pause(); // the peer stops reading: the kernel buffers fill, then socket.write returns false
  const payload = Buffer.alloc(256 << 10);
  let sent = 0;
  let err;
  for (; sent < 4096; sent++) {
    try {
      await c.send("sink", payload);
    } catch (e) {
      err = e;
      break;
    }
    await new Promise((r) => setImmediate(r)); // let the client hand the batch to the socket
  }
  assert.ok(err instanceof ClientError && err.code === "WRITE_QUEUE_FULL", `after ${sent} sends: ${err}`);
  // It failed because the socket stopped draining, not because one batch was too big.
  assert.ok(sent > 4, `failed after only ${sent} sends`);
  t.diagnostic(`write queue full after ${sent} sends of 256 KiB`);
  sock.resume(); // 'drain' empties the queue
  await sleep(50);
  assert.equal(String(await c.send("sink", "again").then(() => "ok")), "ok");
});

test("unknown error codes fail the call with that corr; a closing one is honoured by its flags", async () => {
  let conns = 0;
  const s = await fakeServer({
    onConnect: () => void conns++,
    onFrame: (f, send) => {
      if (f.type === FrameType.REQUEST && String(f.payload) === "forbidden") {
        send({ type: FrameType.ERROR, corr: f.corr, code: 99, retryAfterMs: 0, errorFlags: 0, reason: "nope", addresses: [] });
      } else if (f.type === FrameType.REQUEST) {
        send({ type: FrameType.ERROR, corr: 0, code: 77, retryAfterMs: 0, errorFlags: ErrorFlag.CLOSING | ErrorFlag.RECONNECT, reason: "bye", addresses: [] });
      } else if (f.type === FrameType.ECHO) {
        send({ type: FrameType.ECHO_REPLY, corr: f.corr, payload: f.payload });
      }
    },
  });
  const c = await connect({ addresses: [s.addr] });
  await assert.rejects(c.request("x", "forbidden"), (e) => e instanceof ServerError && e.code === 99 && e.codeName === "CODE_99");
  assert.equal(String(await c.echo("open")), "open");
  const reconnected = once(c, "connected");
  await assert.rejects(c.request("x", "close", { timeoutMs: 2000 }), (e) => e instanceof ClientError && e.code === "DISCONNECTED"
    && e.cause instanceof ServerError && e.cause.code === 77);
  await reconnected;
  assert.equal(conns, 2);
  assert.equal(String(await c.echo("again")), "again");
});

test("a closing ERROR without RECONNECT closes the client", async () => {
  const s = await fakeServer({
    onFrame: (f, send, sock) => {
      send({ type: FrameType.ERROR, corr: 0, code: 1, retryAfterMs: 0, errorFlags: ErrorFlag.CLOSING, reason: "bad", addresses: [] });
      sock.end();
    },
  });
  const c = await connect({ addresses: [s.addr] });
  const closed = new Promise((r) => c.on("state", (st) => st === "closed" && r()));
  await assert.rejects(c.echo("x"), (e) => e instanceof ClientError && e.code === "DISCONNECTED");
  await closed;
  await assert.rejects(c.echo("x"), (e) => e instanceof ClientError && e.code === "CLOSED");
});

test("a refusal with TRY_OTHER sends the next attempt to the suggested address", async () => {
  const good = await fakeServer({});
  const busy = await fakeServer({
    onConnect: (sock, send) => {
      send({
        type: FrameType.ERROR, corr: 0, code: 7, retryAfterMs: 10000,
        errorFlags: ErrorFlag.CLOSING | ErrorFlag.RECONNECT | ErrorFlag.TRY_OTHER, reason: "node full", addresses: [good.addr],
      });
      sock.end();
      return false;
    },
  });
  // The first connect fails over to the next configured address; the refusal is the error
  // when it is the only one.
  await assert.rejects(Client.connect({ addresses: [busy.addr] }), (e) => e instanceof ServerError && e.codeName === "BUSY" && e.tryOther);
  const c = await connect({ addresses: [busy.addr, good.addr] });
  assert.equal(c.connection.address, good.addr);
});

test("incoming requests are answered on their connection; a handler that throws sends nothing", async () => {
  const replies = [];
  const s = await fakeServer({
    onFrame: (f) => { if (f.type === FrameType.REPLY) replies.push(f); },
  });
  const warnings = [];
  const c = await connect({
    addresses: [s.addr],
    onRequest: (req) => {
      if (String(req.payload) === "boom") throw new Error("handler failed");
      return `ok:${req.payload}`;
    },
  });
  c.on("warning", (w) => warnings.push(w));
  const [sock] = s.sockets;
  const incoming = (token, payload) => sock.write(encode({ type: FrameType.INCOMING, corr: 0, token, fromConn: 7n, fromName: "r", payload }));
  incoming(0xfedcba9876543210n, "boom");
  incoming(5n, "a");
  await sleep(100);
  assert.equal(replies.length, 1);
  assert.equal(replies[0].token, 5n);
  assert.equal(String(replies[0].payload), "ok:a");
  assert.match(String(warnings[0]), /handler failed/);
});
