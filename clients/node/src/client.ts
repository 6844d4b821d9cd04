import { EventEmitter } from "node:events";
import * as net from "node:net";
import {
  DEFAULT_MAX_FRAME, ErrorCode, FLAG_ACK, FrameReader, FrameType, MAX_STR8, PROTOCOL_VERSION,
  ProtocolError, decode, encode, frameTypeName, toBuffer,
  type Bytes, type ErrorFrame, type Frame, type FrameInput, type GoAway, type UnknownFrame, type Welcome,
} from "./codec.js";
import { ClientError, ServerError } from "./errors.js";

/** Options of Client.connect. Every field but `addresses` is optional. */
export interface ClientOptions {
  /** Nodes to connect to, as "host:port"; the first that answers is used. */
  addresses: string[];
  /** Client name sent in HELLO (peers see it as the sender). Default: "". */
  name?: string;
  /** Shared secret sent in HELLO. Default: "". */
  token?: string;
  /** Default timeout of every call, and the timeout sent with REQUEST. Default 5000 ms. */
  requestTimeoutMs?: number;
  /** Bound on one TCP connect. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** Bound on HELLO → WELCOME. Default 5000 ms. */
  handshakeTimeoutMs?: number;
  /**
   * Reconnect when the connection is lost (default true); false closes the client instead.
   * Even with true the client closes (state "closed"; later calls fail with ClientError
   * CLOSED) when the server closes the connection, or refuses a reconnect's handshake, with
   * an ERROR that lacks the RECONNECT flag: e.g. UNAUTHORIZED for a wrong token, BAD_FRAME
   * or UNKNOWN_TYPE. Reconnecting would only fail the same way (PROTOCOL.md, checklist 6).
   */
  reconnect?: boolean;
  /** Reconnect attempt n waits a random time in [min, min(max, min·2^(n+1))]. Defaults 100 and 5000 ms. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /**
   * Bytes that may wait to be written while the socket is not draining (its write()
   * returned false and 'drain' has not come yet): the frames in the client's queue plus
   * what the socket has not passed on yet (socket.writableLength). A write that would go
   * past it fails with ClientError WRITE_QUEUE_FULL. Frames written while the socket
   * drains do not count, however many: those of one turn of the event loop go out in one
   * socket write at its end. Default 8 MiB.
   */
  maxWriteQueueBytes?: number;
  /**
   * Random source, returning a number in [0, 1), for picking reconnect addresses: the
   * first address to try from a GOAWAY's or TRY_OTHER ERROR's list (weighted by rank, see
   * spread) and where in the configured list to start after a connection lost without a
   * word from the server. Default Math.random; meant for tests.
   */
  random?: () => number;
  /** Receives each MESSAGE. */
  onMessage?: (m: Message) => void;
  /**
   * Receives each INCOMING request. Return (or resolve to) the reply payload, or call
   * req.reply() yourself (now or later). Throwing sends no reply (the requester gets TIMEOUT).
   */
  onRequest?: (req: IncomingRequest) => Bytes | void | Promise<Bytes | void>;
}

/** Options of a single call. */
export interface CallOptions {
  /** Overrides requestTimeoutMs for this call. */
  timeoutMs?: number;
  /** Aborting rejects the call with the signal's reason. */
  signal?: AbortSignal;
}

export interface SendOptions extends CallOptions {
  /** Ask for an OK (or ERROR) once the server queued the MESSAGE for the target. */
  ack?: boolean;
}

/** A one-way message from another client. */
export interface Message {
  fromConn: bigint;
  fromName: Buffer;
  payload: Buffer;
}

export type State = "connecting" | "connected" | "reconnecting" | "closed";

/** What the client knows about its current connection. */
export interface ConnectionInfo {
  address: string;
  connId: bigint;
  serverId: string;
  maxFrame: number;
  pingIntervalMs: number;
  maxPending: number;
}

const defaults = {
  requestTimeoutMs: 5000,
  connectTimeoutMs: 5000,
  handshakeTimeoutMs: 5000,
  reconnectMinMs: 100,
  reconnectMaxMs: 5000,
  maxWriteQueueBytes: 8 << 20,
  random: Math.random,
};

type Resolved = Required<Omit<ClientOptions, "onMessage" | "onRequest">> & Pick<ClientOptions, "onMessage" | "onRequest">;

/**
 * Allocates correlation ids: a u32 counter that skips 0 and every corr still in use
 * (section 6: never reuse a corr while an answer to it can still arrive).
 */
export class CorrAllocator {
  constructor(private last = 0) {}
  next(inUse: { has(corr: number): boolean }): number {
    for (;;) {
      this.last = (this.last + 1) >>> 0;
      if (this.last !== 0 && !inUse.has(this.last)) return this.last;
    }
  }
}

/** jittered exponential backoff: uniformly random in [lo, min(hi, lo·2^(n+1))]. */
export function backoffMs(lo: number, hi: number, attempt: number): number {
  const ceil = Math.min(hi, lo * 2 ** Math.min(attempt + 1, 30));
  if (ceil <= lo) return lo;
  return lo + Math.random() * (ceil - lo);
}

/** A random integer in [0, n) from random (a number in [0, 1)). */
function randomInt(random: () => number, n: number): number {
  return Math.min(n - 1, Math.max(0, Math.floor(random() * n)));
}

/**
 * Moves one of addrs to the front, chosen at random with weights n, n-1, ..., 1 by
 * position, and returns addrs (changed in place). A server lists its peers best (least
 * loaded) first; if every client of a draining node took the first, they would all land on
 * one node. Weighted by rank, the better nodes still get more of them (with 5 addresses:
 * 33%, 27%, 20%, 13%, 7%). The rest keep their order, for the retries. As the Go client's
 * spread (PROTOCOL.md section 4.13).
 */
export function spread<T>(addrs: T[], random: () => number = Math.random): T[] {
  const n = addrs.length;
  if (n < 2) return addrs;
  let x = randomInt(random, (n * (n + 1)) / 2); // a point in the weights n + (n-1) + ... + 1
  let i = 0;
  for (let w = n; x >= w; w--) {
    x -= w;
    i++;
  }
  const [first] = addrs.splice(i, 1);
  addrs.unshift(first!);
  return addrs;
}

/**
 * Re-registration after a reconnect (as the Go client): names the node cannot decide yet
 * (UNAVAILABLE, BUSY, or no answer within requestTimeoutMs while the connection lasts) are
 * asked for again, in at most REREGISTER_TRIES rounds, at least REREGISTER_MIN_WAIT_MS
 * apart (or the longest retry-after of the round, if longer).
 */
const REREGISTER_TRIES = 30;
const REREGISTER_MIN_WAIT_MS = 250;

interface Pending {
  want: number;
  resolve: (f: Frame) => void;
  reject: (e: Error) => void;
  /** The caller gave up (timeout, abort); the corr stays reserved until the answer comes. */
  abandoned: boolean;
}

/** An INCOMING request. Answer it exactly once with reply(). */
export class IncomingRequest {
  /** The requester's connection id (opaque). */
  readonly fromConn: bigint;
  /** The requester's HELLO client name. */
  readonly fromName: Buffer;
  readonly payload: Buffer;
  private done = false;

  /** @internal */
  constructor(private readonly conn: Conn, private readonly token: bigint, fromConn: bigint, fromName: Buffer, payload: Buffer) {
    this.fromConn = fromConn;
    this.fromName = fromName;
    this.payload = payload;
  }

  /**
   * Whether the request is answered: reply() sent the REPLY or returned false because the
   * connection was gone, or the request was released without one.
   */
  get replied(): boolean { return this.done; }

  /**
   * Sends the REPLY on the connection the request came on. Returns false when that
   * connection is gone (closed, or closing after GOODBYE) or the request was already
   * answered. Throws ClientError FRAME_TOO_LARGE or WRITE_QUEUE_FULL: then nothing was
   * sent and reply() may be called again (a smaller reply, or once the socket drains).
   */
  reply(payload?: Bytes): boolean {
    if (this.done) return false;
    const frame = this.conn.encodeChecked({ type: FrameType.REPLY, corr: 0, token: this.token, payload: payload ?? "" });
    if (this.conn.gone) {
      this.done = true;
      this.conn.incomingDone();
      return false;
    }
    // WRITE_QUEUE_FULL is thrown before anything is queued: the request stays unanswered,
    // as the Go client's Reply leaves it, so that a later reply() can still send.
    this.conn.write(frame);
    this.done = true;
    this.conn.incomingDone();
    return true;
  }

  /** @internal Releases the request without a reply (the handler failed). */
  abandon(): void {
    if (this.done) return;
    this.done = true;
    this.conn.incomingDone();
  }
}

/**
 * One TCP connection: handshake, framing, the write queue, pending calls by corr,
 * keep-alive and the drain after GOAWAY. Owned by a Client.
 */
class Conn {
  readonly pending = new Map<number, Pending>();
  private readonly corrs = new CorrAllocator();
  private readonly reader = new FrameReader(DEFAULT_MAX_FRAME);
  private queue: Buffer[] = [];
  private queued = 0;
  private blocked = false;
  private flushScheduled = false;
  private lastWrite = Date.now();
  private pingTimer: NodeJS.Timeout | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  private incoming = 0;
  closed = false;
  draining = false;
  /** GOODBYE is queued: no more frames go out. */
  private bye = false;
  info: ConnectionInfo | undefined;
  /** The closing ERROR, if the server sent one. */
  closeErr: ServerError | undefined;
  goaway: GoAway | undefined;
  /** Why the connection ended. */
  cause: Error | undefined;
  private handshake: { resolve: (w: Welcome) => void; reject: (e: Error) => void } | undefined;
  readonly done: Promise<void>;
  private markDone!: () => void;

  constructor(private readonly client: Client, readonly address: string, private readonly socket: net.Socket) {
    this.done = new Promise((r) => (this.markDone = r));
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("drain", () => {
      this.blocked = false;
      if (this.queue.length > 0) this.flush();
    });
    socket.on("error", (err) => this.fail(new ClientError("DISCONNECTED", `connection to ${address}: ${err.message}`, { cause: err })));
    socket.on("close", () => this.onClose());
  }

  /** Sends HELLO and waits for WELCOME (or the refusing ERROR). */
  hello(opts: Resolved): Promise<Welcome> {
    return new Promise<Welcome>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.handshake = undefined;
        const err = new ClientError("TIMEOUT", `no WELCOME from ${this.address} within ${opts.handshakeTimeoutMs} ms`);
        reject(err);
        this.fail(err);
      }, opts.handshakeTimeoutMs);
      this.handshake = {
        resolve: (w) => { clearTimeout(timer); resolve(w); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
      try {
        this.write(encode({ type: FrameType.HELLO, corr: 1, version: PROTOCOL_VERSION, name: opts.name, token: opts.token }));
      } catch (err) {
        this.handshake.reject(err as Error);
        this.handshake = undefined;
        this.fail(err as Error);
      }
    });
  }

  private welcomed(w: Welcome): void {
    this.info = {
      address: this.address,
      connId: w.connId,
      serverId: w.serverId.toString("utf8"),
      maxFrame: w.maxFrame,
      pingIntervalMs: w.pingIntervalMs,
      maxPending: w.maxPending,
    };
    // Frames the server sends never exceed its max frame (section 2).
    this.reader.maxFrame = Math.max(w.maxFrame, 1024);
    if (w.pingIntervalMs > 0) this.schedulePing(w.pingIntervalMs);
  }

  // ---- writing ----

  /** The connection takes no more frames: closed, or GOODBYE sent. */
  get gone(): boolean { return this.closed || this.bye; }

  /** Encodes f, refusing frames above the server's max frame. */
  encodeChecked(f: FrameInput): Buffer {
    let buf: Buffer;
    try {
      buf = encode(f);
    } catch (err) {
      if (err instanceof ProtocolError) throw new ClientError("BAD_ARGUMENT", err.message);
      throw err;
    }
    const max = this.info?.maxFrame ?? 1024;
    if (buf.length - 4 > max) {
      throw new ClientError("FRAME_TOO_LARGE", `${frameTypeName(f.type)} of ${buf.length - 4} bytes exceeds the server's max frame ${max}`);
    }
    return buf;
  }

  /**
   * Queues a frame. Frames queued in one turn of the event loop go out in one socket
   * write at its end; while the socket drains they are not a backlog and are not bounded.
   * While it does not (its write() returned false, until 'drain') frames wait in the queue,
   * and what waits (the queue plus the socket's writableLength) is bounded by
   * maxWriteQueueBytes: past it this throws WRITE_QUEUE_FULL and queues nothing.
   */
  write(buf: Buffer): void {
    if (this.gone) throw new ClientError("DISCONNECTED", `connection to ${this.address} is ${this.closed ? "closed" : "closing"}`);
    if (this.blocked) {
      const waiting = this.queued + this.socket.writableLength;
      const max = this.client.options.maxWriteQueueBytes;
      if (waiting > 0 && waiting + buf.length > max) {
        throw new ClientError("WRITE_QUEUE_FULL",
          `write queue full (${waiting} bytes waiting for the socket to drain; limit ${max})`);
      }
    }
    this.queue.push(buf);
    this.queued += buf.length;
    if (!this.blocked && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  private flush(): void {
    if (this.blocked || this.closed || this.queue.length === 0) return;
    const data = this.queue.length === 1 ? this.queue[0]! : Buffer.concat(this.queue, this.queued);
    this.queue = [];
    this.queued = 0;
    this.lastWrite = Date.now();
    if (!this.socket.write(data)) this.blocked = true;
  }

  /** Bytes waiting in the client's queue (not yet handed to the socket). */
  get queuedBytes(): number { return this.queued; }

  private schedulePing(interval: number): void {
    const due = this.lastWrite + interval - Date.now();
    this.pingTimer = setTimeout(() => {
      if (this.closed) return;
      if (Date.now() - this.lastWrite >= interval && !this.draining) {
        try {
          this.write(encode({ type: FrameType.PING, corr: 0, payload: "" }));
          this.lastWrite = Date.now();
        } catch {
          // closing, or the queue is full (then the connection is not idle)
        }
      }
      this.schedulePing(interval);
    }, Math.max(due, 1));
    this.pingTimer.unref();
  }

  // ---- calls ----

  /**
   * Sends a frame with a fresh corr and resolves with the answer of type `want` (or
   * rejects with the ServerError that answers it).
   */
  call(want: number, build: (corr: number) => FrameInput, opts: { deadline: number; signal?: AbortSignal | undefined; slackMs?: number }): Promise<Frame> {
    return new Promise<Frame>((resolve, reject) => {
      if (this.closed || this.draining) {
        reject(new ClientError("DISCONNECTED", `connection to ${this.address} is ${this.closed ? "closed" : "draining"}`));
        return;
      }
      const corr = this.corrs.next(this.pending);
      const frame = build(corr);
      try {
        this.write(this.encodeChecked(frame));
      } catch (err) {
        reject(err as Error);
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      const signal = opts.signal;
      const onAbort = (): void => giveUp(signal!.reason instanceof Error ? signal!.reason : new ClientError("TIMEOUT", "aborted"));
      const cleanup = (): void => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const p: Pending = {
        want,
        abandoned: false,
        resolve: (f) => { cleanup(); resolve(f); },
        reject: (e) => { cleanup(); reject(e); },
      };
      const giveUp = (err: Error): void => {
        if (p.abandoned) return;
        p.abandoned = true; // keep the corr reserved: the answer may still come
        cleanup();
        reject(err);
        this.maybeDrained();
      };
      this.pending.set(corr, p);
      const wait = opts.deadline - Date.now() + (opts.slackMs ?? 0);
      timer = setTimeout(() => giveUp(new ClientError("TIMEOUT", `no answer to ${frameTypeName(frame.type)} within the timeout`)), Math.max(wait, 0));
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  private settle(corr: number, f: Frame, err?: ServerError): void {
    const p = this.pending.get(corr);
    if (!p) return; // an answer nobody waits for (corr 0 PONG, or a stray)
    if (!err && f.type !== p.want) {
      throw new ProtocolError(`${frameTypeName(f.type)} answers corr ${corr}, which expects ${frameTypeName(p.want)}`);
    }
    this.pending.delete(corr);
    if (!p.abandoned) {
      if (err) p.reject(err);
      else p.resolve(f);
    }
    this.maybeDrained();
  }

  // ---- reading ----

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.reader.push(chunk);
    try {
      for (let raw = this.reader.next(); raw !== undefined && !this.closed; raw = this.reader.next()) {
        this.dispatch(decode(raw));
      }
    } catch (err) {
      const e = err instanceof ProtocolError ? new ClientError("PROTOCOL", err.message, { cause: err }) : (err as Error);
      this.fail(e);
    }
  }

  private dispatch(f: Frame | UnknownFrame): void {
    if ("unknown" in f) return; // a newer server's frame type: skip it (checklist 12)
    if (this.handshake) {
      const hs = this.handshake;
      if (f.type === FrameType.WELCOME) {
        this.handshake = undefined;
        if (f.version !== PROTOCOL_VERSION) {
          // As the Go client: a server that speaks another version is not used (the dial
          // fails; Client.connect and the reconnect loop go on to the next address).
          const err = new ClientError("PROTOCOL", `${this.address} speaks protocol version ${f.version}, this client ${PROTOCOL_VERSION}`);
          hs.reject(err);
          this.fail(err);
          return;
        }
        this.welcomed(f);
        hs.resolve(f);
        return;
      }
      if (f.type === FrameType.ERROR) {
        const se = new ServerError(f);
        this.closeErr = se;
        this.handshake = undefined;
        hs.reject(se);
        this.fail(se);
        return;
      }
      throw new ProtocolError(`${frameTypeName(f.type)} before WELCOME`);
    }
    switch (f.type) {
      case FrameType.PONG:
      case FrameType.ECHO_REPLY:
      case FrameType.OK:
      case FrameType.RESPONSE:
        if (f.corr !== 0) this.settle(f.corr, f);
        return;
      case FrameType.ERROR:
        this.onError(f);
        return;
      case FrameType.MESSAGE:
        this.client.deliverMessage({ fromConn: f.fromConn, fromName: Buffer.from(f.fromName), payload: Buffer.from(f.payload) });
        return;
      case FrameType.INCOMING: {
        this.incoming++;
        const req = new IncomingRequest(this, f.token, f.fromConn, Buffer.from(f.fromName), Buffer.from(f.payload));
        this.client.deliverRequest(req);
        return;
      }
      case FrameType.GOAWAY:
        if (!this.goaway) {
          this.goaway = f;
          this.client.emit("goaway", {
            address: this.address, reconnectAfterMs: f.reconnectAfterMs, reason: f.reason.toString("utf8"),
            addresses: f.addresses.map((a) => a.toString("utf8")),
          });
          this.startDrain();
        }
        return;
      default:
        throw new ProtocolError(`unexpected ${frameTypeName(f.type)} from the server`);
    }
  }

  private onError(f: ErrorFrame): void {
    const se = new ServerError(f);
    if (se.closing) this.closeErr = se;
    if (f.corr !== 0) {
      this.settle(f.corr, f, se);
      return;
    }
    if (se.closing) {
      this.fail(se); // the server closes; so do we
      return;
    }
    this.client.emit("warning", se);
  }

  // ---- draining and closing ----

  /** After GOAWAY: no new calls; close once what is in flight is done (or a deadline). */
  private startDrain(): void {
    this.draining = true;
    this.client.connUnusable(this);
    // At the deadline, GOODBYE and read until the server closes, as when the calls end in
    // time: destroying the socket dropped MESSAGEs the server had sent and acknowledged to
    // their senders (the Go client did, and lost 4, 140 and 450 in three drains of a
    // 15,833-connection node). The calls still in flight fail when the connection closes.
    this.drainTimer = setTimeout(() => {
      if (!this.cause) this.cause = new ClientError("DISCONNECTED", "drain deadline passed with calls in flight");
      this.goodbye();
    }, this.client.options.requestTimeoutMs + 1000);
    this.drainTimer.unref();
    this.maybeDrained();
  }

  private maybeDrained(): void {
    if (!this.draining || this.closed || this.incoming > 0) return;
    for (const p of this.pending.values()) if (!p.abandoned) return;
    this.goodbye();
  }

  incomingDone(): void {
    this.incoming--;
    this.maybeDrained();
  }

  /** Sends GOODBYE (once) and half-closes; the server flushes and closes. */
  goodbye(): void {
    if (this.gone) return;
    const g = encode({ type: FrameType.GOODBYE, corr: 0 }); // past the bound: it is the last frame
    this.queue.push(g);
    this.queued += g.length;
    this.bye = true;
    this.flushNowAndEnd();
  }

  /**
   * Writes what is queued, half-closes, and reads until the server closes: what it sent
   * before it read the GOODBYE, MESSAGEs acknowledged to their senders among them, arrives
   * meanwhile. Bounded by 5 s, as the Go client: a node draining ~16K connections on one
   * event loop closed its Go clients' connections 2.3-2.4 s after their GOAWAY, past the
   * 2 s this waited before (one run, docs/BENCHMARKS.md, "A planned drain in a cluster").
   */
  private flushNowAndEnd(): void {
    this.blocked = false;
    this.flush();
    this.socket.end();
    const t = setTimeout(() => this.socket.destroy(), 5000);
    t.unref();
  }

  /** Ends the connection because of err (the first cause wins). */
  fail(err: Error): void {
    if (!this.cause) this.cause = err;
    this.socket.destroy();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.pingTimer) clearTimeout(this.pingTimer);
    if (this.drainTimer) clearTimeout(this.drainTimer);
    const cause = this.closeErr ?? this.cause ?? new ClientError("DISCONNECTED", `connection to ${this.address} closed`);
    if (this.handshake) {
      this.handshake.reject(cause);
      this.handshake = undefined;
    }
    const lost = cause instanceof ClientError && cause.code === "CLOSED"
      ? cause
      : new ClientError("DISCONNECTED", `connection to ${this.address} lost: ${cause.message}`, { cause });
    for (const p of this.pending.values()) if (!p.abandoned) p.reject(lost);
    this.pending.clear();
    this.queue = [];
    this.queued = 0;
    this.markDone();
  }
}

/**
 * A switchboard client: one TCP connection at a time to one of the configured nodes,
 * re-established (and its names registered again) when lost. Create with Client.connect.
 *
 * Events: "state" (State), "connected" (ConnectionInfo), "disconnected" (Error),
 * "goaway" ({address, reconnectAfterMs, reason, addresses}), "nameLost" (name, ServerError
 * NAME_TAKEN: after a reconnect another connection holds the name; it is no longer kept),
 * "warning" (Error: non-fatal server errors, handler failures, names a reconnect could not
 * register again for another reason: those stay kept and are asked for at the next one).
 *
 * After a reconnect every kept name is asked for once (REGISTER) before "connected". Names
 * the node cannot decide yet (ERROR UNAVAILABLE or BUSY, or no answer within
 * requestTimeoutMs while the connection lasts) are asked for again on that connection,
 * meanwhile usable, after the longest retry-after of the round and at least 250 ms apart,
 * up to 30 rounds in all (as the Go client); one still undecided then is reported with a
 * "warning" and stays kept.
 */
export class Client extends EventEmitter {
  readonly options: Resolved;
  private conn: Conn | undefined;
  private _state: State = "connecting";
  /** Names registered through this client, re-registered after a reconnect. */
  private readonly names = new Map<string, Buffer>();
  private waiters: { resolve: (c: Conn) => void; reject: (e: Error) => void }[] = [];
  private closing = false;
  private closeCause: Error | undefined;
  /** Resolves when the client starts closing (shutdown). */
  private readonly closedSignal: Promise<void>;
  private markClosed!: () => void;
  /** Every connection not closed yet: the current one, one draining, one being set up. */
  private readonly open = new Set<Conn>();
  // reconnect address picking (as the Go client's picker)
  private addrIdx = 0;
  private preferred: string[] = [];
  private readonly notBefore = new Map<string, number>();
  /** Ends the reconnect loop's current wait early (close). */
  private wake: (() => void) | undefined;

  private constructor(options: ClientOptions) {
    super();
    if (!options.addresses || options.addresses.length === 0) throw new ClientError("BAD_ARGUMENT", "no addresses");
    const o = { ...defaults, name: "", token: "", reconnect: true, ...stripUndefined(options) } as Resolved;
    o.addresses = [...options.addresses];
    this.options = o;
    this.closedSignal = new Promise((r) => (this.markClosed = r));
  }

  /**
   * Connects to the first address that completes the handshake (each is tried once, in
   * order) and returns the client. Rejects with the last failure when none does.
   */
  static async connect(options: ClientOptions): Promise<Client> {
    const c = new Client(options);
    let last: Error | undefined;
    for (let i = 0; i < c.options.addresses.length; i++) {
      const addr = c.options.addresses[i]!;
      try {
        const conn = await c.dial(addr);
        c.addrIdx = i;
        c.install(conn);
        return c;
      } catch (err) {
        last = err as Error;
      }
    }
    c._state = "closed";
    throw last ?? new ClientError("DISCONNECTED", "no address");
  }

  get state(): State { return this._state; }

  /** The current connection, or undefined while (re)connecting. */
  get connection(): ConnectionInfo | undefined { return this.conn?.info; }

  /** Names this client keeps registered. */
  get registeredNames(): Buffer[] { return [...this.names.values()]; }

  private setState(s: State): void {
    if (this._state === s) return;
    this._state = s;
    this.emit("state", s);
  }

  private dial(addr: string): Promise<Conn> {
    const { host, port } = splitAddress(addr);
    return new Promise<Conn>((resolve, reject) => {
      const socket = net.connect({ host, port });
      const conn = new Conn(this, addr, socket);
      this.open.add(conn);
      void conn.done.then(() => this.open.delete(conn));
      const timer = setTimeout(() => {
        conn.fail(new ClientError("TIMEOUT", `connect to ${addr}: no answer within ${this.options.connectTimeoutMs} ms`));
      }, this.options.connectTimeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        conn.hello(this.options).then(() => resolve(conn), reject);
      });
      conn.done.then(() => {
        clearTimeout(timer);
        reject(conn.closeErr ?? conn.cause ?? new ClientError("DISCONNECTED", `connection to ${addr} closed`));
      });
    });
  }

  /** Makes conn the current connection and watches it. */
  private install(conn: Conn): void {
    this.conn = conn;
    this.preferred = [];
    this.setState("connected");
    this.emit("connected", conn.info);
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.resolve(conn);
    void conn.done.then(() => this.lost(conn));
  }

  /** @internal GOAWAY: conn takes no new calls. */
  connUnusable(conn: Conn): void {
    if (this.conn === conn) {
      this.conn = undefined;
      if (!this.closing) this.setState("reconnecting");
    }
  }

  private async lost(conn: Conn): Promise<void> {
    if (this.conn === conn) this.conn = undefined;
    if (this.closing) return;
    const cause = conn.closeErr ?? conn.cause ?? new ClientError("DISCONNECTED", "connection closed");
    this.emit("disconnected", cause);
    this.note(conn, Date.now());
    if (!this.options.reconnect || (conn.closeErr && !conn.closeErr.reconnect && !conn.goaway)) {
      this.shutdown(cause);
      return;
    }
    this.setState("reconnecting");
    for (let attempt = 0; !this.closing; attempt++) {
      const [addr, at] = this.nextAddress(Date.now());
      const wait = Math.max(backoffMs(this.options.reconnectMinMs, this.options.reconnectMaxMs, attempt), at - Date.now());
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(wait, 0));
        this.wake = () => { clearTimeout(t); r(); };
      });
      this.wake = undefined;
      if (this.closing) return;
      let next: Conn;
      try {
        next = await this.dial(addr);
      } catch (err) {
        if (this.closing) return;
        if (err instanceof ServerError) {
          this.noteError(addr, err, Date.now());
          if (!err.reconnect) {
            this.shutdown(err);
            return;
          }
        }
        this.emit("warning", err);
        continue;
      }
      if (this.closing) {
        next.goodbye();
        return;
      }
      const i = this.options.addresses.indexOf(addr);
      if (i >= 0) this.addrIdx = i;
      const first = await this.registerRound(next, [...this.names.values()]);
      if (this.closing) {
        next.goodbye();
        return;
      }
      if (next.closed) { // lost while re-registering; try again
        this.note(next, Date.now());
        continue;
      }
      this.install(next);
      this.reportLost(first.lost);
      if (first.again.length > 0) void this.reregisterAgain(next, first);
      return;
    }
  }

  /**
   * Asks for names on conn once (REGISTER each, all in flight together) and sorts the
   * outcomes as the Go client's re-registration does: NAME_TAKEN loses the name (dropped
   * from the kept set; reported by the caller with reportLost); UNAVAILABLE, BUSY and no
   * answer in time while conn lasts go to `again`, with the longest retry-after in `wait`;
   * any other failure is a warning and the name stays kept, for the next reconnect.
   */
  private async registerRound(conn: Conn, names: Buffer[]): Promise<RegisterRound> {
    const round: RegisterRound = { again: [], wait: 0, lost: [] };
    const deadline = Date.now() + this.options.requestTimeoutMs;
    await Promise.all(names.map(async (name) => {
      try {
        await conn.call(FrameType.OK, (corr) => ({ type: FrameType.REGISTER, corr, name }), { deadline });
      } catch (err) {
        const key = name.toString("latin1");
        if (err instanceof ServerError && (err.code === ErrorCode.UNAVAILABLE || err.code === ErrorCode.BUSY)) {
          round.again.push({ name, err });
          round.wait = Math.max(round.wait, err.retryAfterMs);
        } else if (isTimeout(err) && !conn.closed) {
          // No outcome in time, the connection still up: a node deciding slowly (a claim
          // waiting on a node that does not answer, a directory electing a leader).
          round.again.push({ name, err: err as Error });
        } else if (err instanceof ServerError && err.code === ErrorCode.NAME_TAKEN) {
          if (this.names.has(key)) {
            this.names.delete(key);
            round.lost.push({ name, err });
          }
        } else if (!this.closing) {
          // Disconnected (the reconnect loop deals with it) or refused otherwise.
          this.emit("warning", err);
        }
      }
    }));
    return round;
  }

  /**
   * Rounds 2 to REREGISTER_TRIES of a reconnect's re-registration, on conn (installed
   * meanwhile: calls work), for the names the node could not decide yet. Stops when every
   * name is decided, a name is no longer kept (unregistered meanwhile), conn ends (the next
   * reconnect registers again) or the client closes. A name still undecided after the
   * last round stays kept and is reported with a warning.
   */
  private async reregisterAgain(conn: Conn, round: RegisterRound): Promise<void> {
    for (let tries = 1; ; tries++) {
      if (round.again.length === 0) return;
      if (tries >= REREGISTER_TRIES) {
        for (const { name, err } of round.again) {
          this.emit("warning", new ClientError("TIMEOUT",
            `re-registering ${JSON.stringify(name.toString("utf8"))} gave up after ${tries} tries: the node could not decide (${err.message})`,
            { cause: err }));
        }
        return;
      }
      await this.pause(Math.max(round.wait, REREGISTER_MIN_WAIT_MS), conn);
      if (this.closing || conn.gone || conn.draining) return; // a new connection registers them again
      const names = round.again.map((a) => a.name).filter((n) => this.names.has(n.toString("latin1")));
      round = await this.registerRound(conn, names);
      if (this.closing) return;
      this.reportLost(round.lost);
    }
  }

  private reportLost(lost: { name: Buffer; err: Error }[]): void {
    for (const { name, err } of lost) this.emit("nameLost", name, err);
  }

  /** Waits ms, or less if conn ends or the client closes. */
  private pause(ms: number, conn: Conn): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => { clearTimeout(t); resolve(); };
      const t = setTimeout(done, ms);
      void conn.done.then(done);
      void this.closedSignal.then(done);
    });
  }

  private block(addr: string, until: number): void {
    if (until > (this.notBefore.get(addr) ?? 0)) this.notBefore.set(addr, until);
  }

  /** Takes addresses a GOAWAY or ERROR suggested as the next to try, the first by spread. */
  private suggest(addrs: string[]): void {
    this.preferred = spread([...addrs], this.options.random);
  }

  /**
   * Records the hints of a connection that ended: GOAWAY or a closing ERROR. Without
   * either (the node died without a word: kill -9, a crash, a hang), the next rotation
   * starts at a random one of the other configured addresses, as the Go client's picker
   * does: otherwise every client of that node, given the same list, tried the same next
   * address and all landed on one node.
   */
  private note(conn: Conn, now: number): void {
    if (!conn.goaway && !conn.closeErr) {
      const n = this.options.addresses.length;
      if (n > 2) this.addrIdx = (this.addrIdx + randomInt(this.options.random, n - 1)) % n;
    }
    if (conn.goaway) {
      this.block(conn.address, now + conn.goaway.reconnectAfterMs);
      this.suggest(conn.goaway.addresses.map((a) => a.toString("utf8")));
    }
    if (conn.closeErr) this.noteError(conn.address, conn.closeErr, now);
  }

  private noteError(addr: string, se: ServerError, now: number): void {
    if (se.retryAfterMs > 0) this.block(addr, now + se.retryAfterMs);
    if (se.tryOther && se.addresses.length > 0) this.suggest(se.addresses);
  }

  /**
   * Suggested addresses first (the first of them picked by spread, the rest in order),
   * then the configured ones in rotation after the last one used; blocked ones last.
   */
  private nextAddress(now: number): [string, number] {
    for (const [a, t] of this.notBefore) if (t <= now) this.notBefore.delete(a);
    while (this.preferred.length > 0) {
      const a = this.preferred.shift()!;
      if (!this.notBefore.has(a)) return [a, 0];
    }
    const addrs = this.options.addresses;
    let best = -1;
    for (let i = 1; i <= addrs.length; i++) {
      const j = (this.addrIdx + i) % addrs.length;
      const t = this.notBefore.get(addrs[j]!);
      if (t === undefined) {
        this.addrIdx = j;
        return [addrs[j]!, 0];
      }
      if (best < 0 || t < this.notBefore.get(addrs[best]!)!) best = j;
    }
    this.addrIdx = best;
    return [addrs[best]!, this.notBefore.get(addrs[best]!)!];
  }

  private shutdown(cause: Error): void {
    this.closing = true;
    this.closeCause = cause;
    this.markClosed();
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.reject(new ClientError("CLOSED", `client closed: ${cause.message}`, { cause }));
    this.wake?.();
    this.setState("closed");
  }

  /** Waits for a usable connection until the deadline or the abort. */
  private ready(deadline: number, signal?: AbortSignal): Promise<Conn> {
    if (this.closing) return Promise.reject(new ClientError("CLOSED", "client closed", { cause: this.closeCause }));
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (this.conn && !this.conn.closed && !this.conn.draining) return Promise.resolve(this.conn);
    return new Promise<Conn>((resolve, reject) => {
      const w = {
        resolve: (c: Conn) => { done(); resolve(c); },
        reject: (e: Error) => { done(); reject(e); },
      };
      const onAbort = (): void => { remove(); reject(abortReason(signal!)); };
      const timer = setTimeout(() => {
        remove();
        reject(new ClientError("TIMEOUT", "no connection within the timeout"));
      }, Math.max(deadline - Date.now(), 0));
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const remove = (): void => {
        done();
        this.waiters = this.waiters.filter((x) => x !== w);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(w);
    });
  }

  private deadline(opts?: CallOptions): number {
    const t = opts?.timeoutMs ?? this.options.requestTimeoutMs;
    if (!Number.isFinite(t) || t < 0) throw new ClientError("BAD_ARGUMENT", `timeout ${t}`);
    return Date.now() + t;
  }

  private async callOnConn(want: number, build: (corr: number) => FrameInput, opts?: CallOptions, slackMs = 0): Promise<Frame> {
    const deadline = this.deadline(opts);
    const conn = await this.ready(deadline, opts?.signal);
    return conn.call(want, build, { deadline, signal: opts?.signal, slackMs });
  }

  /** Registers a name for this connection and keeps it registered across reconnects. */
  async register(name: Bytes, opts?: CallOptions): Promise<void> {
    const n = checkName(name);
    await this.callOnConn(FrameType.OK, (corr) => ({ type: FrameType.REGISTER, corr, name: n }), opts);
    this.names.set(n.toString("latin1"), n);
  }

  /** Releases a name (and stops re-registering it). */
  async unregister(name: Bytes, opts?: CallOptions): Promise<void> {
    const n = checkName(name);
    this.names.delete(n.toString("latin1"));
    await this.callOnConn(FrameType.OK, (corr) => ({ type: FrameType.UNREGISTER, corr, name: n }), opts);
  }

  /**
   * Sends a one-way message. Without ack it resolves once the frame is queued for writing
   * (fire and forget, corr 0); with ack it resolves when the server answers OK (the MESSAGE
   * is queued for the target) and rejects with its ERROR (NO_ROUTE, QUEUE_FULL...).
   */
  async send(name: Bytes, payload: Bytes, opts?: SendOptions): Promise<void> {
    const n = checkName(name);
    if (opts?.ack) {
      await this.callOnConn(FrameType.OK, (corr) => ({ type: FrameType.SEND, flags: FLAG_ACK, corr, name: n, payload }), opts);
      return;
    }
    const conn = await this.ready(this.deadline(opts), opts?.signal);
    conn.write(conn.encodeChecked({ type: FrameType.SEND, corr: 0, name: n, payload }));
  }

  /**
   * Sends a REQUEST and resolves with the RESPONSE payload, or rejects with the server's
   * ERROR (NO_ROUTE, TIMEOUT, QUEUE_FULL...), a ClientError (TIMEOUT as a safety net one
   * second after the server's timeout, DISCONNECTED...) or the signal's abort reason.
   */
  async request(name: Bytes, payload: Bytes, opts?: CallOptions): Promise<Buffer> {
    const n = checkName(name);
    const deadline = this.deadline(opts);
    const conn = await this.ready(deadline, opts?.signal);
    const timeoutMs = Math.min(Math.max(Math.ceil(deadline - Date.now()), 1), 0xffffffff);
    const f = await conn.call(FrameType.RESPONSE,
      (corr) => ({ type: FrameType.REQUEST, corr, name: n, timeoutMs, payload }),
      { deadline, signal: opts?.signal, slackMs: 1000 });
    return Buffer.from((f as { payload: Buffer }).payload); // a copy: do not pin the read chunk
  }

  /** ECHO: resolves with the payload the server sent back. */
  async echo(payload: Bytes, opts?: CallOptions): Promise<Buffer> {
    const f = await this.callOnConn(FrameType.ECHO_REPLY, (corr) => ({ type: FrameType.ECHO, corr, payload }), opts);
    return Buffer.from((f as { payload: Buffer }).payload);
  }

  /** PING: resolves with the round-trip time in milliseconds. */
  async ping(opts?: CallOptions): Promise<number> {
    const t0 = performance.now();
    await this.callOnConn(FrameType.PONG, (corr) => ({ type: FrameType.PING, corr, payload: "" }), opts);
    return performance.now() - t0;
  }

  /** @internal */
  deliverMessage(m: Message): void {
    const fn = this.options.onMessage;
    if (!fn) return;
    try {
      fn(m);
    } catch (err) {
      this.emit("warning", err);
    }
  }

  /** @internal */
  deliverRequest(req: IncomingRequest): void {
    const fn = this.options.onRequest;
    if (!fn) {
      req.abandon();
      return;
    }
    const finish = (v: Bytes | void): void => {
      if (req.replied) return;
      if (v === undefined) {
        return; // the handler replies itself (or not at all)
      }
      try {
        req.reply(v);
      } catch (err) {
        req.abandon();
        this.emit("warning", err);
      }
    };
    const failed = (err: unknown): void => {
      req.abandon();
      this.emit("warning", err);
    };
    try {
      const r = fn(req);
      if (r instanceof Promise) r.then(finish, failed);
      else finish(r);
    } catch (err) {
      failed(err);
    }
  }

  /**
   * Leaves politely and stops reconnecting. Every open connection (the current one, one
   * still draining after a GOAWAY, one a reconnect is setting up) gets GOODBYE, and its
   * calls in flight fail with ClientError CLOSED at once (as the Go client's Close fails
   * them with ErrClosed); then close waits (at most timeoutMs, default 2000) for the server
   * to close them. A connection still in its handshake is dropped. Later calls fail with
   * CLOSED; an IncomingRequest not answered yet can no longer be (reply() returns false).
   */
  async close(timeoutMs = 2000): Promise<void> {
    const conns = [...this.open].filter((c) => !c.closed);
    if (this.closing && this._state === "closed" && conns.length === 0) return;
    if (!this.closing) this.shutdown(new ClientError("CLOSED", "closed by the application"));
    this.conn = undefined;
    for (const conn of conns) {
      if (!conn.info) {
        conn.fail(new ClientError("CLOSED", "client closed"));
        continue;
      }
      for (const p of conn.pending.values()) if (!p.abandoned) p.reject(new ClientError("CLOSED", "client closed"));
      conn.pending.clear();
      conn.goodbye();
    }
    if (conns.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(conns.map((c) => c.done)),
      new Promise<void>((r) => { timer = setTimeout(r, Math.max(timeoutMs, 0)); }),
    ]);
    clearTimeout(timer);
    for (const conn of conns) if (!conn.closed) conn.fail(new ClientError("CLOSED", "client closed"));
  }
}

function checkName(name: Bytes): Buffer {
  const b = toBuffer(name);
  if (b.length < 1 || b.length > MAX_STR8) throw new ClientError("BAD_ARGUMENT", `name of ${b.length} bytes; names are 1 to 255 bytes`);
  return b;
}

function splitAddress(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(":");
  if (i < 0) throw new ClientError("BAD_ARGUMENT", `address ${addr} is not host:port`);
  let host = addr.slice(0, i);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  const port = Number(addr.slice(i + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new ClientError("BAD_ARGUMENT", `address ${addr}: bad port`);
  return { host: host || "localhost", port };
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new ClientError("TIMEOUT", `aborted: ${String(signal.reason)}`);
}

/** A local timeout (ClientError TIMEOUT) or the server's TIMEOUT answering the call. */
function isTimeout(err: unknown): boolean {
  return (err instanceof ClientError && err.code === "TIMEOUT")
    || (err instanceof ServerError && err.code === ErrorCode.TIMEOUT && !err.closing);
}

interface RegisterRound {
  /** Names to ask for again, with the last failure. */
  again: { name: Buffer; err: Error }[];
  /** The longest retry-after among them, ms. */
  wait: number;
  /** Names lost (NAME_TAKEN), already dropped from the kept set. */
  lost: { name: Buffer; err: Error }[];
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

