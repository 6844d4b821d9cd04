// switchboard-client: a Node.js client for the switchboard message server, written from
// docs/PROTOCOL.md (wire protocol version 1). No runtime dependencies.
export {
  Client, CorrAllocator, IncomingRequest, backoffMs, spread,
  type CallOptions, type ClientOptions, type ConnectionInfo, type Message, type SendOptions, type State,
} from "./client.js";
export { ClientError, ServerError, isServerError, type ClientErrorCode } from "./errors.js";
export * from "./codec.js";
