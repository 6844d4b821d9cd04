// Package client is the Go client of switchboard. A Client keeps one TCP connection to a
// switchboard node, registers names on it, sends one-way messages and request/reply calls to
// other clients' names, and receives theirs through callbacks. When the connection is lost
// it reconnects (cycling through the configured addresses with jittered exponential backoff,
// honouring the server's retry-after and GOAWAY hints, spreading over the nodes a GOAWAY
// lists, and after a loss without a word from the server — a node killed — starting at a
// random other configured address, so that a dead node's clients do not all land on the
// next one) and registers its names again. A name another connection took meanwhile is lost
// (NameLost); one the node cannot decide yet (UNAVAILABLE or BUSY, as a cluster answers
// during a KV election) is asked for again after the retry-after, up to 30 times. A server
// that closes the connection, or refuses a reconnect's handshake, with an ERROR that lacks
// the RECONNECT flag (a wrong token, BAD_FRAME) ends the client instead (state Closed), as
// PROTOCOL.md's checklist asks. On GOAWAY the client lets the calls in flight on the
// draining connection finish (up to RequestTimeout plus a second), says GOODBYE on it,
// reads until the server closes it (up to 5 s: MESSAGEs the server acknowledged to their
// senders still arrive), and then connects to the next node, where it registers its names again; new calls wait
// meanwhile. PROTOCOL.md suggests connecting elsewhere first; closing first frees the
// names, which a REGISTER elsewhere would otherwise find taken by the draining connection.
// With Config.TLS the connection is TLS, to a proxy that terminates it in front of the
// node (docs/SECURITY.md); the protocol inside is unchanged.
//
//	c, err := client.Dial(ctx, []string{"10.0.0.1:7400", "10.0.0.2:7400"}, client.Config{
//		Name:      "billing",
//		OnRequest: func(r *client.Request) { r.Reply(handle(r.Payload)) },
//	})
//	...
//	defer c.Close()
//	err = c.Register(ctx, "billing")
//	resp, err := c.Request(ctx, "ledger", payload)
//
// # Calls and outcomes
//
// Every call that waits for an answer (Register, Unregister, SendAck, Request, Echo, Ping)
// has exactly one outcome: its result, a *ServerError (errors.Is matches the code sentinels
// such as ErrNoRoute), the context's error (context.Cause), ErrClosed after Close, or an
// error matching ErrDisconnected when the connection carrying it was lost. A disconnected
// call may or may not have taken effect on the server; the client does not retry it, except
// Register, which is idempotent and is retried on the next connection.
//
// Calls are pipelined: any number of goroutines may have calls in flight on the one
// connection; answers are matched by correlation id, not by order. Frames written by
// concurrent callers are batched into shared write system calls.
//
// While the client is reconnecting, new calls wait for the next connection. Every call is
// bounded by its context and, when the context has no earlier deadline, by
// Config.RequestTimeout; a call that runs out of that time returns an error matching both
// ErrTimeout and context.DeadlineExceeded.
//
// # Callbacks
//
// OnMessage and OnRequest run on the connection's reader goroutine, one at a time, in the
// order the server sent the frames. OnStateChange runs on the client's supervisor goroutine
// (for the first Connected, on the goroutine calling Dial), one at a time, in order:
//
//	Dial ──► Connected ──► (connection lost) ──► Reconnecting ──► Connected [──► NameLost]
//	              │                                    │               │
//	              └─ Close / NoReconnect / ERROR without RECONNECT ─┴────┴──► Closed
//
// Callbacks of an old connection have all returned before the new connection's reader
// starts, so OnMessage and OnRequest never run concurrently with each other.
//
// # Concurrency
//
// A Client is safe for concurrent use by multiple goroutines. Request.Reply is safe to call
// from any goroutine, during or after the OnRequest callback. Config is copied by Dial;
// changing the caller's copy afterwards has no effect.
//
// Internally each connection has three goroutines: a reader (decodes frames, completes
// calls, runs callbacks), a writer (flushes the shared write buffer) and a keeper (pings
// every half ping interval unless the connection was both written to and heard from
// since the last one, so that a busy client notices a server that went silent; drain
// deadline). One supervisor goroutine per Client owns reconnection. Close
// stops and waits for all of them.
//
// # Caveats
//
//   - A callback that blocks stalls the connection: no answers, messages or requests are
//     read until it returns, and the server may drop a connection that does not read its
//     output (SLOW_CONSUMER). Hand long work to another goroutine.
//   - For the same reason a callback must not wait for an answer: Request, SendAck,
//     Register, Unregister, Echo and Ping called from OnMessage or OnRequest can only end by
//     their timeout, because the answer would be read by the goroutine that is waiting.
//     Send and Request.Reply do not wait for answers and are fine in callbacks.
//   - Close waits for the goroutines that run callbacks, so a callback (including
//     OnStateChange) must not call Close directly; use go c.Close().
//   - Payload slices handed to callbacks and returned by Request and Echo are fresh copies
//     owned by the callee. Slices passed into the client (payloads of Send, Request,
//     Reply...) are copied into the write buffer before the call returns and may be reused
//     right away.
//   - Send is fire-and-forget: a nil error means the frame was queued for writing, not that
//     anyone received it. Use SendAck to learn the outcome.
//   - A Register abandoned because its context ended may still take effect on the server;
//     such a name is not re-registered after a reconnect. Call Unregister to be sure.
//   - An INCOMING request that is never replied to ends with TIMEOUT at its sender.
package client
