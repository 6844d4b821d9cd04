// Package shard holds switchboard's connection bookkeeping: connection IDs,
// the per-event-loop connection Table, the node-wide name Registry, and the
// bounded Ring that carries work from any goroutine to one event loop.
//
// A ConnID names one connection for its whole life: node, loop, slot in the
// loop's Table, and the slot's generation. Routing a message by name is a
// Registry.Lookup (name → ConnID); the ConnID's loop says whether the target
// is on the current loop (Table.Get, then write) or on another one (Push the
// message onto that loop's Ring, which reports false when full so overload
// becomes an error instead of memory growth).
//
// Directory is the routing interface; Registry implements it for one node.
//
// # Concurrency
//
//   - Table is owned by one event loop and has no locks; only that loop may
//     call its methods. Other goroutines hold ConnIDs, not table entries.
//   - Registry is safe for concurrent use. Names are spread over 64
//     partitions, each with its own sync.RWMutex; a lock is held only for the
//     map operation, never across I/O or a callback. Lookup takes a read
//     lock; Len reads an atomic counter and takes none.
//   - Ring has many producers and one consumer: Push is safe from any
//     goroutine, Pop only from the owning loop (one goroutine at a time).
//     Neither blocks. Len and Cap are safe anywhere; Len is approximate.
//   - ConnID is a plain value, safe to copy and compare anywhere.
//
// # Caveats
//
//   - Registry.Lookup does not retain its name slice, so the slice may be
//     borrowed from a network buffer. Register copies the name it stores.
//   - A slot's generation is 16 bits: after 65535 reuses of one slot it
//     wraps (skipping 0), and a ConnID held across that many reuses would
//     match the slot's current occupant again. Callers that keep ConnIDs for
//     long (for example request reply tokens) should also check liveness by
//     other means if that matters.
//   - Ring.Pop can report false while Len is non-zero: a producer that has
//     claimed the oldest position but not yet finished writing it holds back
//     later values until it does. The consumer should poll again on its next
//     wake-up rather than spin.
//   - Table slots are never released back to the runtime: the slot slice
//     keeps its high-water size (a few words per slot).
//   - PartitionSizes reads partitions one at a time; it is not a consistent
//     snapshot under concurrent updates.
package shard
