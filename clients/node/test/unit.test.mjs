// Client behaviour against a scripted fake server (node:net): backpressure, unknown error
// codes, closing errors, TRY_OTHER, corr allocation and backoff.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import {
  Client, ClientError, CorrAllocator, ErrorCode, ErrorFlag, FrameReader, FrameType, ServerError, backoffMs, decode, encode, spread,
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

// ---- reconnect address picking (PROTOCOL.md 4.13; the Go client's picker) ----

test("spread puts an address first, weighted n, n-1, ..., 1 by rank, and keeps the rest in order", () => {
  const addrs = ["a", "b", "c", "d", "e"];
  const firsts = new Map();
  for (let x = 0; x < 15; x++) { // every point of the weights 5+4+3+2+1
    const out = spread([...addrs], () => (x + 0.5) / 15);
    const first = out[0];
    firsts.set(first, (firsts.get(first) ?? 0) + 1);
    assert.deepEqual(out.slice(1), addrs.filter((a) => a !== first), "the rest keep their order");
  }
  assert.deepEqual([...firsts.entries()], [["a", 5], ["b", 4], ["c", 3], ["d", 2], ["e", 1]]); // 33%, 27%, 20%, 13%, 7%
  assert.deepEqual(spread(["only"], () => 0.99), ["only"]);
});

/** Fake nodes that count their connections. */
async function countingServers(n, opts = {}) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const s = { conns: 0 };
    Object.assign(s, await fakeServer({ ...opts, onConnect: () => void s.conns++ }));
    out.push(s);
  }
  return out;
}

test("GOAWAY: the first address tried is picked at random weighted by rank, not always the first", async () => {
  const peers = await countingServers(3);
  const draining = await fakeServer({
    onFrame: (f, send) => {
      if (f.type !== FrameType.ECHO) return;
      send({ type: FrameType.ECHO_REPLY, corr: f.corr, payload: f.payload });
      send({ type: FrameType.GOAWAY, corr: 0, reconnectAfterMs: 0, reason: "draining", addresses: peers.map((p) => p.addr) });
    },
  });
  // 0.99 is the last point of the weights 3+2+1: the third address.
  const c = await connect({ addresses: [draining.addr], random: () => 0.99 });
  const moved = once(c, "connected");
  await c.echo("x");
  const [info] = await moved;
  assert.equal(info.address, peers[2].addr);
  assert.deepEqual(peers.map((p) => p.conns), [0, 0, 1]);
});

test("a closing ERROR with TRY_OTHER: the first suggested address tried is picked by spread too", async () => {
  const peers = await countingServers(3);
  const busy = await fakeServer({
    onFrame: (f, send, sock) => {
      if (f.type !== FrameType.ECHO) return;
      send({
        type: FrameType.ERROR, corr: 0, code: 7, retryAfterMs: 0,
        errorFlags: ErrorFlag.CLOSING | ErrorFlag.RECONNECT | ErrorFlag.TRY_OTHER, reason: "shedding", addresses: peers.map((p) => p.addr),
      });
      sock.end();
    },
  });
  const c = await connect({ addresses: [busy.addr], random: () => 0.4 }); // point 2 of 6: the first
  const moved = once(c, "connected");
  await assert.rejects(c.echo("x"), (e) => e instanceof ClientError && e.code === "DISCONNECTED");
  assert.equal((await moved)[0].address, peers[0].addr);
  const c2 = await connect({ addresses: [busy.addr], random: () => 0.6 }); // point 3 of 6: the second
  const moved2 = once(c2, "connected");
  await assert.rejects(c2.echo("x"), (e) => e instanceof ClientError && e.code === "DISCONNECTED");
  assert.equal((await moved2)[0].address, peers[1].addr);
});

test("a connection lost without a word: the next attempt starts at a random other configured address", async () => {
  const nodes = await countingServers(4);
  // random 0.99 → the rotation skips 2 of the 3 other addresses: after A comes D.
  const c = await connect({ addresses: nodes.map((n) => n.addr), random: () => 0.99 });
  assert.equal(c.connection.address, nodes[0].addr);
  const moved = once(c, "connected");
  for (const so of nodes[0].sockets) so.destroy(); // a crash: no ERROR, no GOAWAY
  assert.equal((await moved)[0].address, nodes[3].addr);
  assert.deepEqual(nodes.map((n) => n.conns), [1, 0, 0, 1]);

  // With random 0 it is the next one in the list (from D: A), as before.
  const c0 = await connect({ addresses: nodes.map((n) => n.addr), random: () => 0 });
  assert.equal(c0.connection.address, nodes[0].addr);
  const moved0 = once(c0, "connected");
  for (const so of [...nodes[0].sockets]) so.destroy();
  assert.equal((await moved0)[0].address, nodes[1].addr);
});

// ---- re-registration after a reconnect (PROTOCOL.md 4.4; the Go client's reregistered) ----

/**
 * A fake node that answers the REGISTERs of its first connection OK and those of later
 * connections with answer(name, n, send, f) (n: the count of that name's REGISTERs on
 * that connection, from 1); the REGISTERs of later connections are recorded in regs.
 */
async function registrar(answer) {
  let conns = 0;
  const regs = [];
  const counts = new WeakMap();
  const s = await fakeServer({
    onConnect: (sock) => void counts.set(sock, { conn: ++conns, names: new Map() }),
    onFrame: (f, send, sock) => {
      if (f.type !== FrameType.REGISTER) return;
      const st = counts.get(sock);
      const name = String(f.name);
      const n = (st.names.get(name) ?? 0) + 1;
      st.names.set(name, n);
      if (st.conn === 1) {
        send({ type: FrameType.OK, corr: f.corr });
        return;
      }
      regs.push({ name, n, at: Date.now() });
      answer(name, n, send, f);
    },
  });
  return { s, regs, crash: () => { for (const so of s.sockets) so.destroy(); } };
}

const errorFrame = (f, code, retryAfterMs = 0) =>
  ({ type: FrameType.ERROR, corr: f.corr, code, retryAfterMs, errorFlags: 0, reason: "", addresses: [] });

test("re-registration retries UNAVAILABLE (after its retry-after) and BUSY, and keeps the name", async () => {
  const { s, regs, crash } = await registrar((name, n, send, f) => {
    if (n === 1) send(errorFrame(f, ErrorCode.UNAVAILABLE, 400)); // the owner's node hangs
    else if (n === 2) send(errorFrame(f, ErrorCode.BUSY));
    else send({ type: FrameType.OK, corr: f.corr });
  });
  const c = await connect({ addresses: [s.addr] });
  const lost = [];
  c.on("nameLost", (name, err) => lost.push([String(name), err]));
  await c.register("svc");
  const reconnected = once(c, "connected");
  crash();
  await reconnected;
  const end = Date.now() + 5000;
  while (regs.length < 3 && Date.now() < end) await sleep(20);
  await sleep(300); // no fourth
  assert.deepEqual(regs.map((r) => r.n), [1, 2, 3]);
  assert.ok(regs[1].at - regs[0].at >= 390, `second REGISTER ${regs[1].at - regs[0].at} ms after UNAVAILABLE with retry-after 400`);
  assert.ok(regs[2].at - regs[1].at >= 240, `third REGISTER ${regs[2].at - regs[1].at} ms after BUSY (at least 250 ms apart)`);
  assert.deepEqual(lost, []);
  assert.deepEqual(c.registeredNames.map(String), ["svc"]);
});

test("a re-REGISTER with no answer in time is asked again, not left unregistered", async () => {
  const { s, regs, crash } = await registrar((name, n, send, f) => {
    if (n >= 2) send({ type: FrameType.OK, corr: f.corr }); // the first gets no answer
  });
  const c = await connect({ addresses: [s.addr], requestTimeoutMs: 300 });
  const lost = [];
  c.on("nameLost", (name) => lost.push(String(name)));
  await c.register("slow");
  const reconnected = once(c, "connected");
  crash();
  await reconnected;
  const end = Date.now() + 5000;
  while (regs.length < 2 && Date.now() < end) await sleep(20);
  assert.deepEqual(regs.map((r) => r.n), [1, 2]);
  assert.deepEqual(lost, []);
  assert.deepEqual(c.registeredNames.map(String), ["slow"]);
});

test("re-registration: NAME_TAKEN loses the name (nameLost); another refusal warns and keeps it", async () => {
  const { s, regs, crash } = await registrar((name, n, send, f) => {
    send(errorFrame(f, name === "taken" ? ErrorCode.NAME_TAKEN : ErrorCode.FORBIDDEN));
  });
  const c = await connect({ addresses: [s.addr] });
  const lost = [];
  const warnings = [];
  c.on("nameLost", (name, err) => lost.push([String(name), err.codeName]));
  c.on("warning", (w) => warnings.push(w));
  await c.register("taken");
  await c.register("forbidden");
  const reconnected = once(c, "connected");
  crash();
  await reconnected;
  await sleep(400); // neither is asked again on this connection
  assert.deepEqual(regs.map((r) => `${r.name}#${r.n}`).sort(), ["forbidden#1", "taken#1"]);
  assert.deepEqual(lost, [["taken", "NAME_TAKEN"]]);
  assert.ok(warnings.some((w) => w instanceof ServerError && w.codeName === "FORBIDDEN"), String(warnings));
  assert.deepEqual(c.registeredNames.map(String), ["forbidden"]); // kept: asked for again at the next reconnect
});

// ---- WELCOME's version ----

test("a WELCOME of another protocol version fails the connection (the next address is tried)", async () => {
  const v2 = await fakeServer({ welcome: { version: 2 } });
  const good = await fakeServer({});
  await assert.rejects(Client.connect({ addresses: [v2.addr] }),
    (e) => e instanceof ClientError && e.code === "PROTOCOL" && /version 2/.test(e.message));
  const c = await connect({ addresses: [v2.addr, good.addr] });
  assert.equal(c.connection.address, good.addr);
});

// ---- the write queue counts only what waits for a socket that does not drain ----

test("a burst of un-awaited sends to a draining socket is not WRITE_QUEUE_FULL", async () => {
  let got = 0;
  const s = await fakeServer({ onFrame: (f) => { if (f.type === FrameType.SEND) got++; } });
  const c = await connect({ addresses: [s.addr] }); // the default bound, 8 MiB
  const payload = Buffer.alloc(1024);
  // 10,000 × 1 KiB (about 10 MiB) in one turn of the event loop, before any socket write.
  const results = await Promise.allSettled(Array.from({ length: 10000 }, () => c.send("sink", payload)));
  const failed = results.filter((r) => r.status === "rejected");
  assert.equal(failed.length, 0, `${failed.length} sends failed, e.g. ${failed[0]?.reason}`);
  const end = Date.now() + 10000;
  while (got < 10000 && Date.now() < end) await sleep(20);
  assert.equal(got, 10000);
});

// ---- IncomingRequest.reply after WRITE_QUEUE_FULL ----

test("reply() that throws WRITE_QUEUE_FULL sent nothing: a later reply() still sends", async () => {
  const replies = [];
  const s = await fakeServer({ onFrame: (f) => { if (f.type === FrameType.REPLY) replies.push(f); } });
  let req;
  const c = await connect({ addresses: [s.addr], maxWriteQueueBytes: 1 << 20, onRequest: (r) => void (req = r) });
  const [sock] = s.sockets;
  sock.write(encode({ type: FrameType.INCOMING, corr: 0, token: 9n, fromConn: 7n, fromName: "r", payload: "q" }));
  while (!req) await sleep(5);
  sock.pause(); // the server stops reading: the socket stops draining
  const payload = Buffer.alloc(256 << 10);
  for (let i = 0; i < 4096; i++) {
    try {
      await c.send("sink", payload);
    } catch (e) {
      assert.ok(e instanceof ClientError && e.code === "WRITE_QUEUE_FULL", String(e));
      break;
    }
    await new Promise((r) => setImmediate(r));
  }
  assert.throws(() => req.reply(payload), (e) => e instanceof ClientError && e.code === "WRITE_QUEUE_FULL");
  assert.equal(req.replied, false);
  sock.resume();
  const end = Date.now() + 10000;
  let ok = false;
  while (!ok && Date.now() < end) {
    try {
      ok = req.reply("answer");
      assert.equal(ok, true);
    } catch (e) {
      assert.ok(e instanceof ClientError && e.code === "WRITE_QUEUE_FULL", String(e));
      await sleep(20);
    }
  }
  assert.equal(req.replied, true);
  assert.equal(req.reply("twice"), false);
  while (replies.length === 0 && Date.now() < end) await sleep(20);
  assert.deepEqual(replies.map((r) => [r.token, String(r.payload)]), [[9n, "answer"]]);
});

// ---- the drain deadline ----

test("at the drain deadline the connection says GOODBYE and reads until the server closes", async () => {
  let goodbyeAt = 0;
  const s = await fakeServer({
    onConnect: (sock, send) => void sock.on("data", (d) => {
      if (goodbyeAt || !d.includes(Buffer.from([0, 0, 0, 6, FrameType.GOODBYE]))) return;
      goodbyeAt = Date.now();
      // sent before the server read the GOODBYE: acknowledged to its sender, it must arrive
      send({ type: FrameType.MESSAGE, corr: 0, fromConn: 1n, fromName: "x", payload: "acknowledged to its sender" });
    }),
    onFrame: (f, send, sock) => {
      if (f.type !== FrameType.ECHO) return;
      sock.write(encode({ type: FrameType.INCOMING, corr: 0, token: 7n, fromConn: 2n, fromName: "asker", payload: "never answered" }));
      send({ type: FrameType.ECHO_REPLY, corr: f.corr, payload: f.payload });
      send({ type: FrameType.GOAWAY, corr: 0, reconnectAfterMs: 0, reason: "draining", addresses: [] });
    },
  });
  const got = [];
  const c = await connect({
    addresses: [s.addr], requestTimeoutMs: 200, onRequest: () => new Promise(() => {}),
    onMessage: (m) => got.push(String(m.payload)),
  });
  const t0 = Date.now();
  await c.echo("go");
  const end = Date.now() + 5000;
  while (got.length === 0 && Date.now() < end) await sleep(20);
  assert.ok(goodbyeAt > 0, "no GOODBYE at the drain deadline");
  assert.ok(goodbyeAt - t0 >= 1200, `GOODBYE ${goodbyeAt - t0} ms after GOAWAY; want the drain deadline, 1200 ms`);
  assert.deepEqual(got, ["acknowledged to its sender"]);
  await c.close(1000);
});

// ---- close() after GOAWAY ----

test("close() fails the calls of a connection draining after GOAWAY with CLOSED and says GOODBYE on it", async () => {
  let goodbyes = 0;
  const s = await fakeServer({
    onConnect: (sock) => void sock.on("data", (d) => { if (d.includes(Buffer.from([0, 0, 0, 6, FrameType.GOODBYE]))) goodbyes++; }),
    onFrame: (f, send) => {
      if (f.type === FrameType.REQUEST) {
        // never answered; the node starts draining
        send({ type: FrameType.GOAWAY, corr: 0, reconnectAfterMs: 0, reason: "draining", addresses: [] });
      }
    },
  });
  const c = await connect({ addresses: [s.addr] });
  const goaway = once(c, "goaway");
  const pending = c.request("svc", "x", { timeoutMs: 10000 });
  pending.catch(() => {});
  await goaway;
  assert.equal(c.state, "reconnecting"); // the draining connection takes no new calls
  const t0 = Date.now();
  await c.close(1000);
  const outcome = await Promise.race([pending.then(() => "answered", (e) => e), sleep(1500).then(() => "still pending")]);
  assert.ok(outcome instanceof ClientError && outcome.code === "CLOSED", `the draining connection's call: ${outcome}`);
  assert.ok(Date.now() - t0 < 1500, `close took ${Date.now() - t0} ms`);
  assert.equal(goodbyes, 1);
  assert.equal(c.state, "closed");
});
