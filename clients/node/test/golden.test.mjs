// The golden vectors of docs/PROTOCOL.md, read from the document at test time (as the Go
// test codec/golden_test.go TestProtocolDocVectors does): each block is decoded, checked
// field by field, and encoded again to the same bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { FrameReader, FrameType, ProtocolError, decode, encode, ErrorFlag } from "../dist/index.js";

const docPath = fileURLToPath(new URL("../../../docs/PROTOCOL.md", import.meta.url));
// Same pattern as codec/golden_test.go: a marker line directly followed by a ```hex block.
const goldenBlock = /^<!-- golden: ([a-z0-9_]+) -->\n```hex\n((?:[^`]*\n)?)```/gm;

/** Lines starting with '#' are comments; whitespace is ignored; hex digits are lowercase. */
function parseHex(text) {
  let digits = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("#")) continue;
    for (const ch of line) {
      if (ch === " " || ch === "\t") continue;
      if (!/[0-9a-f]/.test(ch)) throw new Error(`unexpected ${JSON.stringify(ch)} in hex (digits must be lowercase)`);
      digits += ch;
    }
  }
  assert.equal(digits.length % 2, 0, "odd number of hex digits");
  return Buffer.from(digits, "hex");
}

function vectors() {
  const doc = readFileSync(docPath, "utf8");
  const out = new Map();
  for (const m of doc.matchAll(goldenBlock)) {
    assert.ok(!out.has(m[1]), `golden ${m[1]} appears twice`);
    out.set(m[1], parseHex(m[2]));
  }
  const markers = doc.split("<!-- golden:").length - 1;
  assert.equal(out.size, markers, "every golden marker must be directly followed by a ```hex block");
  return out;
}

const alice = 0x0001020000050003n;
const token = 0x0001020000090001n;
const s = (x) => Buffer.from(x);

// What each vector decodes to (field values from the comments in the document). Encoding
// these values must give the vector's bytes.
const expected = {
  hello: { type: FrameType.HELLO, flags: 0, corr: 1, version: 1, name: s("alice"), token: s("s3cret") },
  welcome: {
    type: FrameType.WELCOME, flags: 0, corr: 1, version: 1, connId: alice, maxFrame: 1048576,
    pingIntervalMs: 30000, maxPending: 1000, serverId: s("node-1"),
  },
  ping: { type: FrameType.PING, flags: 0, corr: 2, payload: s("t1") },
  pong: { type: FrameType.PONG, flags: 0, corr: 2, payload: s("t1") },
  echo: { type: FrameType.ECHO, flags: 0, corr: 3, payload: s("hi!") },
  echo_reply: { type: FrameType.ECHO_REPLY, flags: 0, corr: 3, payload: s("hi!") },
  register: { type: FrameType.REGISTER, flags: 0, corr: 4, name: s("calc") },
  unregister: { type: FrameType.UNREGISTER, flags: 0, corr: 5, name: s("calc") },
  ok: { type: FrameType.OK, flags: 0, corr: 6 },
  send_ack: { type: FrameType.SEND, flags: 1, corr: 6, name: s("bob"), payload: s("hello") },
  send: { type: FrameType.SEND, flags: 0, corr: 0, name: s("bob"), payload: s("hello") },
  message: { type: FrameType.MESSAGE, flags: 0, corr: 0, fromConn: alice, fromName: s("alice"), payload: s("hello") },
  request: { type: FrameType.REQUEST, flags: 0, corr: 7, name: s("calc"), timeoutMs: 2500, payload: s("2+2") },
  incoming: {
    type: FrameType.INCOMING, flags: 0, corr: 0, token, fromConn: alice, fromName: s("alice"), payload: s("2+2"),
  },
  reply: { type: FrameType.REPLY, flags: 0, corr: 0, token, payload: s("4") },
  response: { type: FrameType.RESPONSE, flags: 0, corr: 7, payload: s("4") },
  error_queue_full: {
    type: FrameType.ERROR, flags: 0, corr: 6, code: 9, retryAfterMs: 0, errorFlags: 0,
    reason: s("queue towards the target is full; retry later"), addresses: [],
  },
  error_busy_addrs: {
    type: FrameType.ERROR, flags: 0, corr: 0, code: 7, retryAfterMs: 1000,
    errorFlags: ErrorFlag.CLOSING | ErrorFlag.RECONNECT | ErrorFlag.TRY_OTHER,
    reason: s("connection limit reached"), addresses: [s("10.0.0.2:7400"), s("10.0.0.3:7400")],
  },
  error_forbidden: {
    type: FrameType.ERROR, flags: 0, corr: 8, code: 19, retryAfterMs: 0, errorFlags: 0,
    reason: s("user may not SEND to this name"), addresses: [],
  },
  goaway: {
    type: FrameType.GOAWAY, flags: 0, corr: 0, reconnectAfterMs: 0, reason: s("node draining"),
    addresses: [s("10.0.0.2:7400")],
  },
  goodbye: { type: FrameType.GOODBYE, flags: 0, corr: 0 },
};

test("every frame type of section 4 has a golden vector in the document", () => {
  const v = vectors();
  const types = new Set([...v.values()].map((b) => b[4]));
  for (const [name, t] of Object.entries(FrameType)) {
    assert.ok(types.has(t), `no golden vector of type ${name}`);
  }
});

test("golden vectors decode to their documented fields and encode back to the same bytes", async (t) => {
  const v = vectors();
  for (const name of Object.keys(expected)) {
    assert.ok(v.has(name), `golden ${name} is missing from docs/PROTOCOL.md`);
  }
  for (const [name, bytes] of v) {
    await t.test(name, () => {
      const f = decode(bytes);
      assert.ok(!("unknown" in f), `${name}: unknown frame type ${bytes[4]}`);
      assert.deepEqual(encode(f), bytes, `${name}: decode then encode changes the bytes`);
      const want = expected[name];
      if (want === undefined) {
        assert.fail(`golden ${name} is new in docs/PROTOCOL.md: add its fields to test/golden.test.mjs`);
      }
      assert.deepEqual({ ...f }, want, `${name}: decoded fields`);
      assert.deepEqual(encode(want), bytes, `${name}: encoding the documented fields`);
    });
  }
});

test("FrameReader cuts the document's frames from any split of the stream", () => {
  const frames = [...vectors().values()];
  const stream = Buffer.concat(frames);
  for (const chunk of [1, 3, 7, 64, stream.length]) {
    const r = new FrameReader();
    const got = [];
    for (let i = 0; i < stream.length; i += chunk) {
      r.push(stream.subarray(i, i + chunk));
      for (let f = r.next(); f; f = r.next()) got.push(Buffer.from(f));
    }
    assert.deepEqual(got, frames, `chunks of ${chunk}`);
    assert.equal(r.pending, 0);
  }
});

test("FrameReader rejects len < 6 and len > max frame from the 4-byte prefix", () => {
  const small = new FrameReader();
  small.push(Buffer.from("00000005", "hex"));
  assert.throws(() => small.next(), ProtocolError);
  const big = new FrameReader(1024);
  big.push(Buffer.from("00000401", "hex")); // 1025, no body yet
  assert.throws(() => big.next(), ProtocolError);
  const ok = new FrameReader(1024);
  ok.push(Buffer.from("00000400", "hex"));
  assert.equal(ok.next(), undefined); // legal, waiting for the body
});

test("malformed bodies are rejected", () => {
  const bad = [
    "0000000a 81 00 00000001 00010000", // WELCOME cut short
    "00000007 84 00 00000001 00", // OK with a body
    "00000006 04 00 00000001", // REGISTER with an empty name
    "0000000c 07 00 00000000 0161 00000000".replace(/ /g, ""), // REQUEST corr 0 (len fixed below)
    "00000008 06 00 00000000 05 61", // SEND whose str8 runs past the body
    "0000000e 89 00 00000000 00000000 00 00 ff", // GOAWAY with a trailing byte
  ];
  for (const h of bad) {
    const b = Buffer.from(h.replace(/ /g, ""), "hex");
    b.writeUInt32BE(b.length - 4, 0);
    assert.throws(() => decode(b), ProtocolError, h);
  }
  // Unknown types are skipped, not errors (checklist 12).
  const u = decode(Buffer.from("000000087f000000000" + "1abcd", "hex"));
  assert.equal(u.unknown, true);
});
