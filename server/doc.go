// Package server is switchboard's node: a gnet event-loop reactor that speaks the codec
// protocol, keeps the name directory, routes SEND and REQUEST between connections, and
// stays bounded under load.
//
// # Architecture
//
// The server owns its listening socket: one acceptor goroutine accepts, applies admission
// (connection cap, draining) and hands each admitted connection to a gnet event loop
// (gnet's client-mode engine, EnrollContext). Refused connections get an ERROR frame from
// the acceptor; a few lingerer goroutines wait for the client to close. Accepting here
// rather than in gnet has two reasons: gnet stops its whole engine when accept() fails (EMFILE included), and an
// ERROR-before-close needs a descriptor and a place to decide. The connection cap is
// derived from RLIMIT_NOFILE (limits.MaxConnections), so EMFILE does not happen in
// practice; if it does, the acceptor backs off and retries.
//
// Callback order for one connection, all on its loop:
//
//	acceptor: Accept → admit? ── no ──→ ERROR BUSY/SHUTTING_DOWN, half-close; lingerer: close after FIN
//	             │ yes
//	             ▼
//	loop k: OnOpen (table slot, handshake timer)
//	        OnTraffic* (Peek → Decode ≤ FramesPerWake frames → dispatch → Discard → flush;
//	                    Wake self if whole frames remain)
//	        drain* (cross-loop deliveries from the ring, via EventLoop.Execute)
//	        tick* (timer wheel: handshake, idle, request timeouts, via Execute from OnTick)
//	        OnClose (names released, slot freed; gnet flushes what it still buffers)
//
// # Concurrency
//
// The rules every change must keep:
//
//  1. A connection, its conn context value and every byte borrowed from gnet belong to its
//     event loop. Only that loop reads or writes them.
//  2. Other goroutines reach a loop only through gnet's concurrency-safe doors
//     (EventLoop.Execute, Conn.Close/Wake) or through the loop's bounded inbound ring
//     (loop.push). OnTick runs on gnet's ticker goroutine, not a loop: it only Executes each
//     loop's tick.
//  3. Slices from Peek die at Discard: frames are copied into output buffers (same loop) or
//     pooled buffers (other loops) before OnTraffic returns.
//  4. A loop never blocks: no disk, no network, no contended lock, no channel send. The
//     directory's partition locks are held only for a map operation.
//  5. Fairness: at most FramesPerWake frames per OnTraffic; the connection wakes itself if
//     more whole frames are buffered.
//  6. Shared fields say how they are guarded (see Server and loop).
//  7. Every goroutine the server starts (acceptor, lingerers) is tracked and has exited when
//     Shutdown returns; gnet's own goroutines have exited too.
//
// # Bounded queues
//
// Cross-loop traffic goes through a fixed-size ring per loop (RingSize): a full ring
// answers the sender QUEUE_FULL. Output for one connection is capped at MaxPending messages
// or MaxPendingBytes bytes not yet taken by its socket; past that the connection is a slow
// consumer: it gets ERROR SLOW_CONSUMER and is closed, and the sender gets QUEUE_FULL.
// Requests in flight per connection are capped at MaxPending too.
//
// # Caveats
//
// Output produced in a callback is written once, at its end (one write per connection),
// so frames ride together in as few system calls as possible. Cross-loop wake-ups cost one
// small allocation inside gnet's Execute per batch, not per message.
package server
