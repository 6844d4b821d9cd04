// Package server is switchboard's node: a gnet event-loop reactor that speaks the codec
// protocol, keeps the name directory, routes SEND and REQUEST between connections, and
// stays bounded under load.
//
// # Architecture
//
// The server owns its listening socket: one acceptor goroutine accepts, applies admission
// (connection cap, draining) and hands each admitted connection to one of a few enroller
// goroutines, which give it to the gnet event loop with the fewest connections (gnet's
// client-mode engine, EnrollContext, which waits for the loop to register it: several
// in flight keep a busy loop from setting the accept rate). Refused connections get an
// ERROR frame from the acceptor; a few lingerer goroutines wait for the client to close.
// Accepting here rather than in gnet has two reasons: gnet stops its whole engine when
// accept() fails (EMFILE included), and an ERROR-before-close needs a descriptor and a
// place to decide. The connection cap is
// derived from RLIMIT_NOFILE (limits.MaxConnections), so EMFILE does not happen in
// practice; if it does, the acceptor backs off and retries.
//
// Start meets every event loop before the first client connects (one short-lived loopback
// probe per loop), so every loop is ticked from the start and OnOpen finds its loop in a
// table that no longer changes. Start listens on Config.Listen; StartListener and Serve
// take a listener the caller made (systemd socket activation, SO_REUSEPORT siblings).
//
// Callback order for one connection, all on its loop:
//
//	acceptor: Accept → admit? ── no ──→ ERROR BUSY/SHUTTING_DOWN, half-close; lingerer: close after FIN
//	             │ yes (from a trusted proxy: node-wide tiers here, then a header reader
//	             │      peeks the PROXY header, reads exactly it, and admits per IP)
//	             ▼
//	loop k: OnOpen (table slot, its timer set to the handshake timeout)
//	        [HELLO needing bcrypt: stateVerifying; a verifier goroutine Executes the outcome]
//	        OnTraffic* (Peek → Decode ≤ FramesPerWake frames → dispatch → wake target
//	                    loops → Discard → flush own answers if nothing else waits, else
//	                    queue the round's flush; Wake self if whole frames remain)
//	        drain* (cross-loop deliveries from the ring, via EventLoop.Execute)
//	        flush (after the round's events and drains: one write per dirty connection;
//	               with write-coalesce, after a busy round of a saturated loop small output waits a round)
//	        tick* (timer wheels: handshake, idle, request timeouts, via Execute from OnTick)
//	        slow consumer* (ERROR after what was accepted, write side shut, input discarded)
//	        OnClose (names released, slot freed; gnet flushes what it still buffers)
//
// # The path of a frame, file by file
//
//	accept.go     acceptor: tier-1 admission, refusals with ERROR, lingerers
//	proxy.go      PROXY protocol headers from trusted proxies, read off the acceptor
//	callbacks.go  gnet callbacks: OnOpen, OnTraffic (Peek → codec.Decode), OnClose, OnTick
//	admit.go      per-frame admission: zone shedding, tiers 2-3, tier 4 for REQUEST
//	dispatch.go   one frame by type; HELLO
//	auth.go       HELLO's token or credentials (bcrypt off the loop), FORBIDDEN per frame, the handshake cap
//	names.go      REGISTER and UNREGISTER against the directory
//	route.go      SEND and the routing of MESSAGE/INCOMING to a target connection
//	gate.go       admission to a connection of another loop, before the ACK
//	ring.go       the cross-loop hand-off: a bounded ring per loop, drained on the loop
//	requests.go   REQUEST, REPLY and the exactly-one-outcome bookkeeping
//	remote.go     the same for connections of other nodes: records to the Remote (the
//	              cluster), DeliverRemote for records from it, SEND+ACK waiting for the
//	              target node's answer
//	outbox.go     a connection's output: frames, caps, flush, slow-consumer watch and close
//
// Beside the path: server.go (lifecycle), loop.go, wheel.go and conntimer.go (per-loop
// state and timers), conn.go, sampler.go (zones, capacity), reload.go, drain.go, metrics.go and
// metrics_runtime.go (HELP and TYPE for the Go runtime and process metrics), stats.go,
// admin.go and cmdline.go, connlog.go, config.go, credentials.go (compiled users and
// permissions), auth.go (HELLO checks off the loops), proxy.go (PROXY headers),
// gnetaddr.go (the per-connection addresses gnet keeps, dropped at OnOpen).
//
// # Concurrency
//
// The rules every change must keep:
//
//  1. A connection, its conn context value and every byte borrowed from gnet belong to its
//     event loop. Only that loop reads or writes them.
//  2. Other goroutines reach a loop only through gnet's concurrency-safe doors
//     (EventLoop.Execute, Conn.Close/Wake) or through the loop's bounded inbound ring
//     (loop.push). Records from other nodes come in through DeliverRemote, on the
//     cluster's goroutine, which uses the gates and rings as another loop would; records
//     for other nodes go out through Remote.Forward, which only queues (never the
//     network on a loop). OnTick runs on gnet's ticker goroutine, not a loop: it samples the zone
//     inputs (atomics and runtime/metrics only, never a loop's own state) and Executes
//     each loop's tick.
//  3. Slices from Peek die at Discard: frames are copied into output buffers (same loop) or
//     pooled buffers (other loops) before OnTraffic returns.
//  4. A loop never blocks: no disk, no network, no contended lock, no channel send. The
//     directory's partition locks are held only for a map operation.
//  5. Fairness: at most FramesPerWake frames per OnTraffic; the connection wakes itself if
//     more whole frames are buffered.
//  6. Shared fields say how they are guarded (see Server and loop).
//  7. Every goroutine the server starts (acceptor, lingerers, PROXY header readers,
//     credentials verifiers) is
//     tracked and has exited when Shutdown returns; gnet's own goroutines have exited too.
//
// # Bounded queues
//
// Cross-loop traffic goes through a fixed-size ring per loop (RingSize): a full ring
// answers the sender QUEUE_FULL. Output for one connection is capped at MaxPending messages
// or MaxPendingBytes bytes not yet taken by its socket; the message that finds it at a cap
// makes it a slow consumer, and its senders get QUEUE_FULL. What a sender was told OK for
// is never dropped while the target is connected: a target on another loop is admitted
// at its gate (gate.go, one atomic word per connection) before the OK, and its loop
// queues whatever was admitted, even past the caps. The slow consumer then gets ERROR
// SLOW_CONSUMER after all of it and a graceful close (outbox.go, slowConsumer).
// What one sender has in the rings is bounded by RouteCredit: the message that uses it up
// pauses the sender's input until the target loops have landed half (credit.go).
// Requests in flight per connection are capped at MaxPending too.
// Connections still in the handshake are capped at MaxHandshakes (BUSY at accept), and
// HELLOs waiting for a credentials check at 8 per verifier goroutine (BUSY).
//
// Shared between loops besides the rings: the gates (written by their loop, read and
// counted by every loop, lock-free).
//
// # Caveats
//
// gnet.Conn's LocalAddr, RemoteAddr and SafeContext are nil for client connections: OnOpen
// drops what gnet keeps there (~200 B per connection, gnetaddr.go). A connection's address
// is conn.ip, the peer's or the one its PROXY header named; format it when it is shown.
//
// Output is written once per poll round per connection: what a round's callbacks and the
// ring drains produce waits in the connections' outboxes and one task queued behind the
// round's events (flushLater) writes it, so frames ride together in as few system calls as
// possible, except that a connection's output is written once it passes 64 KiB
// (outFlushAt), so that the buffer collecting it stays small however many messages a
// round brings it. Only a callback that answered nothing but its own peer (echo) writes at
// its end, which saves the loop a wake-up of its own. Output buffers come from a per-loop free
// list (outFree), apart from the pooled copies that cross loops (msgPool). A callback
// wakes each loop it routed to once, at its end (pushLater, wakeOwners); a wake-up costs
// one small allocation inside gnet's Execute per batch, not per message.
package server
