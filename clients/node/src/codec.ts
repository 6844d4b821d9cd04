// Wire format of switchboard protocol version 1 (docs/PROTOCOL.md): framing, every frame
// type's body layout, an encoder and a decoder for each, and an incremental frame reader.
// Integers are big-endian; u64 values (connection ids, reply tokens) are bigints.

/** Protocol version spoken by this client (HELLO) and expected in WELCOME. */
export const PROTOCOL_VERSION = 1;
/** Fixed header: u32 len, u8 type, u8 flags, u32 corr. */
export const HEADER_SIZE = 10;
/** Smallest legal `len` (an empty body). */
export const MIN_LEN = 6;
/** The server's default maximum frame length, and what a client assumes before WELCOME. */
export const DEFAULT_MAX_FRAME = 1 << 20;
/** Longest name or str8 value. */
export const MAX_STR8 = 255;

/** Frame types (section 4). Client-to-server types are below 0x80. */
export const FrameType = {
  HELLO: 0x01,
  PING: 0x02,
  ECHO: 0x03,
  REGISTER: 0x04,
  UNREGISTER: 0x05,
  SEND: 0x06,
  REQUEST: 0x07,
  REPLY: 0x08,
  GOODBYE: 0x09,
  WELCOME: 0x81,
  PONG: 0x82,
  ECHO_REPLY: 0x83,
  OK: 0x84,
  ERROR: 0x85,
  MESSAGE: 0x86,
  INCOMING: 0x87,
  RESPONSE: 0x88,
  GOAWAY: 0x89,
} as const;
export type FrameTypeName = keyof typeof FrameType;

const typeNames = new Map<number, FrameTypeName>(
  Object.entries(FrameType).map(([k, v]) => [v, k as FrameTypeName]),
);

/** The name of a frame type, or `0xNN` for one this client does not know. */
export function frameTypeName(t: number): string {
  return typeNames.get(t) ?? `0x${t.toString(16).padStart(2, "0")}`;
}

/** The ACK flag of SEND (the only defined frame flag). */
export const FLAG_ACK = 0x01;

/** Error flags in an ERROR body. Other bits are reserved and ignored. */
export const ErrorFlag = {
  CLOSING: 0x01,
  RECONNECT: 0x02,
  TRY_OTHER: 0x04,
} as const;

/** Error codes (section 8). Codes are never renumbered; new ones may be added. */
export const ErrorCode = {
  BAD_FRAME: 1,
  FRAME_TOO_LARGE: 2,
  UNSUPPORTED_VERSION: 3,
  UNAUTHORIZED: 4,
  HANDSHAKE_TIMEOUT: 5,
  UNKNOWN_TYPE: 6,
  BUSY: 7,
  RATE_LIMITED: 8,
  QUEUE_FULL: 9,
  SLOW_CONSUMER: 10,
  CIRCUIT_OPEN: 11,
  NO_ROUTE: 12,
  NAME_TAKEN: 13,
  TIMEOUT: 14,
  SHUTTING_DOWN: 15,
  INTERNAL: 16,
  HELLO_REQUIRED: 17,
  NOT_OWNER: 18,
  FORBIDDEN: 19,
  UNAVAILABLE: 20,
} as const;

const codeNames = new Map<number, string>(Object.entries(ErrorCode).map(([k, v]) => [v, k]));

/** The name of an error code; unknown codes (a newer server) are `CODE_<n>`. */
export function errorCodeName(code: number): string {
  return codeNames.get(code) ?? `CODE_${code}`;
}

/** Bytes or a string (encoded as UTF-8). */
export type Bytes = Uint8Array | string;

/** Converts to a Buffer without copying when it already is one. */
export function toBuffer(b: Bytes | undefined): Buffer {
  if (b === undefined) return Buffer.alloc(0);
  if (typeof b === "string") return Buffer.from(b, "utf8");
  if (Buffer.isBuffer(b)) return b;
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** Thrown for bytes that do not follow the protocol (also by encoders given bad values). */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

// ---- Decoded frames -----------------------------------------------------------------

interface Base {
  /** Correlation id (u32). */
  corr: number;
  /** Frame flags; only ACK on SEND is defined. Decoded as received. */
  flags?: number;
}

export interface Hello extends Base { type: 0x01; version: number; name: Buffer; token: Buffer }
export interface Ping extends Base { type: 0x02; payload: Buffer }
export interface Echo extends Base { type: 0x03; payload: Buffer }
export interface Register extends Base { type: 0x04; name: Buffer }
export interface Unregister extends Base { type: 0x05; name: Buffer }
export interface Send extends Base { type: 0x06; name: Buffer; payload: Buffer }
export interface RequestFrame extends Base { type: 0x07; name: Buffer; timeoutMs: number; payload: Buffer }
export interface Reply extends Base { type: 0x08; token: bigint; payload: Buffer }
export interface Goodbye extends Base { type: 0x09 }
export interface Welcome extends Base {
  type: 0x81;
  version: number;
  connId: bigint;
  maxFrame: number;
  pingIntervalMs: number;
  maxPending: number;
  serverId: Buffer;
}
export interface Pong extends Base { type: 0x82; payload: Buffer }
export interface EchoReply extends Base { type: 0x83; payload: Buffer }
export interface Ok extends Base { type: 0x84 }
export interface ErrorFrame extends Base {
  type: 0x85;
  code: number;
  retryAfterMs: number;
  errorFlags: number;
  reason: Buffer;
  addresses: Buffer[];
}
export interface MessageFrame extends Base { type: 0x86; fromConn: bigint; fromName: Buffer; payload: Buffer }
export interface Incoming extends Base {
  type: 0x87;
  token: bigint;
  fromConn: bigint;
  fromName: Buffer;
  payload: Buffer;
}
export interface ResponseFrame extends Base { type: 0x88; payload: Buffer }
export interface GoAway extends Base { type: 0x89; reconnectAfterMs: number; reason: Buffer; addresses: Buffer[] }
/** A frame of a type this client does not know: skipped by the client (checklist 12). */
export interface UnknownFrame extends Base { type: number; unknown: true; body: Buffer }

export type Frame =
  | Hello | Ping | Echo | Register | Unregister | Send | RequestFrame | Reply | Goodbye
  | Welcome | Pong | EchoReply | Ok | ErrorFrame | MessageFrame | Incoming | ResponseFrame | GoAway;

/** Input of encode: byte fields may be strings (UTF-8), flags default to 0. */
export type FrameInput = { [F in Frame as F["type"]]: Loosen<F> }[Frame["type"]];
type Loosen<F> = {
  [K in keyof F]: F[K] extends Buffer ? Bytes : F[K] extends Buffer[] ? Bytes[] : F[K];
} & { flags?: number };

// ---- Encoding -----------------------------------------------------------------------

function str8(b: Buffer, field: string): Buffer {
  if (b.length > MAX_STR8) throw new ProtocolError(`${field}: ${b.length} bytes; a str8 holds at most ${MAX_STR8}`);
  return b;
}

function checkName(b: Buffer, field: string): Buffer {
  if (b.length < 1 || b.length > MAX_STR8) {
    throw new ProtocolError(`${field}: ${b.length} bytes; a name is 1 to ${MAX_STR8} bytes`);
  }
  return b;
}

function u32(v: number, field: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new ProtocolError(`${field}: ${v} is not a u32`);
  return v;
}

/** Assembles a frame from its header fields and body parts. */
class Builder {
  private parts: { size: number; write: (buf: Buffer, off: number) => void }[] = [];
  private size = 0;

  u8(v: number): this { return this.add(1, (b, o) => b.writeUInt8(v, o)); }
  u16(v: number): this { return this.add(2, (b, o) => b.writeUInt16BE(v, o)); }
  u32(v: number, field: string): this { u32(v, field); return this.add(4, (b, o) => b.writeUInt32BE(v, o)); }
  u64(v: bigint): this { return this.add(8, (b, o) => b.writeBigUInt64BE(BigInt.asUintN(64, v), o)); }
  bytes(v: Buffer): this { return this.add(v.length, (b, o) => v.copy(b, o)); }
  str8(v: Buffer): this { return this.u8(v.length).bytes(v); }
  addrs(list: Buffer[], field: string): this {
    if (list.length > 255) throw new ProtocolError(`${field}: ${list.length} addresses; at most 255`);
    this.u8(list.length);
    for (const a of list) this.str8(str8(a, field));
    return this;
  }

  private add(size: number, write: (buf: Buffer, off: number) => void): this {
    this.parts.push({ size, write });
    this.size += size;
    return this;
  }

  frame(type: number, flags: number, corr: number): Buffer {
    const buf = Buffer.allocUnsafe(HEADER_SIZE + this.size);
    buf.writeUInt32BE(MIN_LEN + this.size, 0);
    buf.writeUInt8(type, 4);
    buf.writeUInt8(flags & 0xff, 5);
    buf.writeUInt32BE(u32(corr, "corr"), 6);
    let off = HEADER_SIZE;
    for (const p of this.parts) {
      p.write(buf, off);
      off += p.size;
    }
    return buf;
  }
}

/** Encodes any frame of section 4 (both directions). Throws ProtocolError on bad values. */
export function encode(f: FrameInput): Buffer {
  const b = new Builder();
  switch (f.type) {
    case FrameType.HELLO:
      b.u16(f.version).str8(str8(toBuffer(f.name), "client name")).str8(str8(toBuffer(f.token), "token"));
      break;
    case FrameType.PING:
    case FrameType.ECHO:
    case FrameType.PONG:
    case FrameType.ECHO_REPLY:
    case FrameType.RESPONSE:
      b.bytes(toBuffer(f.payload));
      break;
    case FrameType.REGISTER:
    case FrameType.UNREGISTER:
      b.bytes(checkName(toBuffer(f.name), "name"));
      break;
    case FrameType.SEND:
      b.str8(checkName(toBuffer(f.name), "target name")).bytes(toBuffer(f.payload));
      break;
    case FrameType.REQUEST:
      if (f.corr === 0) throw new ProtocolError("REQUEST needs corr ≠ 0");
      b.str8(checkName(toBuffer(f.name), "target name")).u32(f.timeoutMs, "timeout").bytes(toBuffer(f.payload));
      break;
    case FrameType.REPLY:
      b.u64(f.token).bytes(toBuffer(f.payload));
      break;
    case FrameType.GOODBYE:
    case FrameType.OK:
      break;
    case FrameType.WELCOME:
      b.u16(f.version).u64(f.connId).u32(f.maxFrame, "max frame").u32(f.pingIntervalMs, "ping interval")
        .u32(f.maxPending, "max pending").str8(str8(toBuffer(f.serverId), "server id"));
      break;
    case FrameType.ERROR:
      b.u16(f.code).u32(f.retryAfterMs, "retry-after").u8(f.errorFlags)
        .str8(str8(toBuffer(f.reason), "reason")).addrs(f.addresses.map(toBuffer), "address");
      break;
    case FrameType.MESSAGE:
      b.u64(f.fromConn).str8(str8(toBuffer(f.fromName), "from name")).bytes(toBuffer(f.payload));
      break;
    case FrameType.INCOMING:
      b.u64(f.token).u64(f.fromConn).str8(str8(toBuffer(f.fromName), "from name")).bytes(toBuffer(f.payload));
      break;
    case FrameType.GOAWAY:
      b.u32(f.reconnectAfterMs, "reconnect-after").str8(str8(toBuffer(f.reason), "reason"))
        .addrs(f.addresses.map(toBuffer), "address");
      break;
    default:
      throw new ProtocolError(`cannot encode frame type ${frameTypeName((f as { type: number }).type)}`);
  }
  return b.frame(f.type, f.flags ?? 0, f.corr);
}

// ---- Decoding -----------------------------------------------------------------------

/** Reads body fields; every read checks the bytes left. */
class Cursor {
  off = 0;
  constructor(private readonly b: Buffer, private readonly what: string) {}

  private need(n: number, field: string): void {
    if (this.b.length - this.off < n) {
      throw new ProtocolError(`${this.what}: ${field} needs ${n} bytes, ${this.b.length - this.off} left`);
    }
  }
  u8(field: string): number { this.need(1, field); return this.b.readUInt8(this.off++); }
  u16(field: string): number { this.need(2, field); const v = this.b.readUInt16BE(this.off); this.off += 2; return v; }
  u32(field: string): number { this.need(4, field); const v = this.b.readUInt32BE(this.off); this.off += 4; return v; }
  u64(field: string): bigint { this.need(8, field); const v = this.b.readBigUInt64BE(this.off); this.off += 8; return v; }
  str8(field: string): Buffer {
    const n = this.u8(field);
    this.need(n, field);
    const v = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }
  addrs(): Buffer[] {
    const n = this.u8("address count");
    const out: Buffer[] = [];
    for (let i = 0; i < n; i++) out.push(this.str8("address"));
    return out;
  }
  rest(): Buffer { const v = this.b.subarray(this.off); this.off = this.b.length; return v; }
  end(): void {
    if (this.off !== this.b.length) throw new ProtocolError(`${this.what}: ${this.b.length - this.off} trailing bytes`);
  }
}

/**
 * Decodes one frame body. Byte fields are views into `body` (no copies). Unknown types
 * come back as UnknownFrame; malformed bodies throw ProtocolError.
 */
export function decodeBody(type: number, flags: number, corr: number, body: Buffer): Frame | UnknownFrame {
  const c = new Cursor(body, frameTypeName(type));
  const h = { corr, flags };
  switch (type) {
    case FrameType.HELLO: {
      const f: Hello = { type, ...h, version: c.u16("version"), name: c.str8("client name"), token: c.str8("token") };
      c.end();
      return f;
    }
    case FrameType.PING: return { type, ...h, payload: c.rest() };
    case FrameType.ECHO: return { type, ...h, payload: c.rest() };
    case FrameType.PONG: return { type, ...h, payload: c.rest() };
    case FrameType.ECHO_REPLY: return { type, ...h, payload: c.rest() };
    case FrameType.RESPONSE: return { type, ...h, payload: c.rest() };
    case FrameType.REGISTER:
    case FrameType.UNREGISTER: {
      const name = c.rest();
      if (name.length < 1 || name.length > MAX_STR8) throw new ProtocolError(`${frameTypeName(type)}: name of ${name.length} bytes`);
      return type === FrameType.REGISTER ? { type, ...h, name } : { type, ...h, name };
    }
    case FrameType.SEND: {
      const name = c.str8("target name");
      if (name.length === 0) throw new ProtocolError("SEND: empty target name");
      return { type, ...h, name, payload: c.rest() };
    }
    case FrameType.REQUEST: {
      const name = c.str8("target name");
      if (name.length === 0) throw new ProtocolError("REQUEST: empty target name");
      if (corr === 0) throw new ProtocolError("REQUEST with corr 0");
      return { type, ...h, name, timeoutMs: c.u32("timeout"), payload: c.rest() };
    }
    case FrameType.REPLY: return { type, ...h, token: c.u64("reply token"), payload: c.rest() };
    case FrameType.GOODBYE:
      c.end();
      return { type, ...h };
    case FrameType.OK:
      c.end();
      return { type, ...h };
    case FrameType.WELCOME: {
      const f: Welcome = {
        type, ...h, version: c.u16("version"), connId: c.u64("conn id"), maxFrame: c.u32("max frame"),
        pingIntervalMs: c.u32("ping interval"), maxPending: c.u32("max pending"), serverId: c.str8("server id"),
      };
      c.end();
      return f;
    }
    case FrameType.ERROR: {
      const f: ErrorFrame = {
        type, ...h, code: c.u16("code"), retryAfterMs: c.u32("retry-after"), errorFlags: c.u8("error flags"),
        reason: c.str8("reason"), addresses: c.addrs(),
      };
      c.end();
      return f;
    }
    case FrameType.MESSAGE:
      return { type, ...h, fromConn: c.u64("from conn id"), fromName: c.str8("from name"), payload: c.rest() };
    case FrameType.INCOMING:
      return {
        type, ...h, token: c.u64("reply token"), fromConn: c.u64("from conn id"), fromName: c.str8("from name"),
        payload: c.rest(),
      };
    case FrameType.GOAWAY: {
      const f: GoAway = { type, ...h, reconnectAfterMs: c.u32("reconnect-after"), reason: c.str8("reason"), addresses: c.addrs() };
      c.end();
      return f;
    }
    default:
      return { type, ...h, unknown: true, body };
  }
}

/** Decodes exactly one whole frame (header and body). */
export function decode(buf: Buffer): Frame | UnknownFrame {
  if (buf.length < 4) throw new ProtocolError(`frame of ${buf.length} bytes is shorter than its length field`);
  const len = buf.readUInt32BE(0);
  if (len < MIN_LEN) throw new ProtocolError(`len ${len} < ${MIN_LEN}`);
  if (buf.length !== 4 + len) throw new ProtocolError(`len ${len} but ${buf.length - 4} bytes follow it`);
  return decodeBody(buf.readUInt8(4), buf.readUInt8(5), buf.readUInt32BE(6), buf.subarray(HEADER_SIZE));
}

/**
 * Cuts a byte stream into frames. push() the bytes as they arrive; next() returns the
 * next whole frame's bytes, or undefined when more bytes are needed. A `len` below 6 or
 * above maxFrame throws ProtocolError as soon as the 4-byte prefix is in.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(public maxFrame: number = DEFAULT_MAX_FRAME) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** Bytes received and not yet returned as frames. */
  get pending(): number {
    return this.buffered;
  }

  next(): Buffer | undefined {
    if (this.buffered < 4) return undefined;
    let head = this.chunks[0]!;
    if (head.length < 4) head = this.flatten();
    const len = head.readUInt32BE(0);
    if (len < MIN_LEN) throw new ProtocolError(`len ${len} < ${MIN_LEN}`);
    if (len > this.maxFrame) throw new ProtocolError(`len ${len} > max frame ${this.maxFrame}`);
    const size = 4 + len;
    if (this.buffered < size) return undefined;
    if (head.length < size) head = this.flatten();
    const frame = head.subarray(0, size);
    if (head.length === size) this.chunks.shift();
    else this.chunks[0] = head.subarray(size);
    this.buffered -= size;
    return frame;
  }

  private flatten(): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    this.chunks = [all];
    return all;
  }
}
