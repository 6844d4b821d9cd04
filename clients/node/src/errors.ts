import { ErrorCode, ErrorFlag, errorCodeName, type ErrorFrame } from "./codec.js";

/**
 * An ERROR frame from the server. `code` is the numeric code (section 8 of PROTOCOL.md);
 * codes this client does not know (added by a newer server) keep their number and are
 * named `CODE_<n>`; they are handled like any other failure, by their flags.
 */
export class ServerError extends Error {
  readonly code: number;
  readonly codeName: string;
  readonly retryAfterMs: number;
  readonly errorFlags: number;
  readonly reason: string;
  readonly addresses: string[];

  constructor(f: Pick<ErrorFrame, "code" | "retryAfterMs" | "errorFlags" | "reason" | "addresses">) {
    const codeName = errorCodeName(f.code);
    const reason = f.reason.toString("utf8");
    super(`switchboard: ${codeName}${reason ? `: ${reason}` : ""}`);
    this.name = "ServerError";
    this.code = f.code;
    this.codeName = codeName;
    this.retryAfterMs = f.retryAfterMs;
    this.errorFlags = f.errorFlags;
    this.reason = reason;
    this.addresses = f.addresses.map((a) => a.toString("utf8"));
  }

  /** The server closes the connection after this error. */
  get closing(): boolean { return (this.errorFlags & ErrorFlag.CLOSING) !== 0; }
  /** The client may reconnect (after retryAfterMs). */
  get reconnect(): boolean { return (this.errorFlags & ErrorFlag.RECONNECT) !== 0; }
  /** The client should prefer another node (addresses may list some). */
  get tryOther(): boolean { return (this.errorFlags & ErrorFlag.TRY_OTHER) !== 0; }
}

/** Local failure codes of ClientError. */
export type ClientErrorCode =
  | "TIMEOUT" // no outcome within the call's timeout (local deadline)
  | "DISCONNECTED" // the connection carrying the call was lost; it may or may not have taken effect
  | "CLOSED" // the client was closed
  | "WRITE_QUEUE_FULL" // the socket is not draining and what waits for it reached maxWriteQueueBytes
  | "FRAME_TOO_LARGE" // the frame would exceed the server's max frame (WELCOME)
  | "BAD_ARGUMENT" // an empty or over-long name, a bad timeout
  | "PROTOCOL"; // the server sent bytes that break the protocol

/** A failure detected by the client itself, not reported by the server. */
export class ClientError extends Error {
  readonly code: ClientErrorCode;
  constructor(code: ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(`switchboard: ${message}`, options);
    this.name = "ClientError";
    this.code = code;
  }
}

/** True when err is a ServerError with the given code (a number or a name of ErrorCode). */
export function isServerError(err: unknown, code?: number | keyof typeof ErrorCode): err is ServerError {
  if (!(err instanceof ServerError)) return false;
  if (code === undefined) return true;
  return err.code === (typeof code === "number" ? code : ErrorCode[code]);
}
