// Package cluster joins switchboard nodes into a cluster over NATS: a cluster-wide name
// directory, and the transport that routes messages, requests and replies between nodes
// (docs/CLUSTER.md says what exists and what does not yet).
//
// A Node is started by cmd/switchboard (Start) in one of two modes: ModeEmbedded runs a
// nats-server in the process, joined to the other nodes' through routes (a seed list,
// which may include the node's own address), with JetStream storing in a directory per
// node; ModeExternal connects to a NATS system by URL. Node.Directory is a
// shard.Directory that the server uses through server.WithDirectory; Node.Forwarder is a
// server.Remote (server.WithRemote) whose handler is the server's DeliverRemote. The
// server never imports this package or NATS.
//
// The forwarder (forward.go) gives each node one subject,
// switchboard.<cluster>.node.<id>, and each destination a bounded queue of the server's
// records, drained by one goroutine that publishes all it holds as one NATS message.
// Forward only copies into that queue: no NATS call runs on an event loop.
//
// The directory keeps exactly one owner per name across the cluster:
//
//   - A JetStream KV bucket (switchboard_names_<cluster>) is the arbiter: key = the name
//     in base64url, value = owner node, epoch and ConnID (entry.go). A claim is a Create
//     (succeeds only if the key is absent or deleted) or, to take a name over from a dead
//     owner, an Update on the revision read (a CAS). Reads are hints, taken from the
//     stream leader (followers can be behind, shared/CLUSTER.md hazard 3).
//   - A leases bucket (switchboard_leases_<cluster>, bucket TTL = LeaseTTL) holds one key
//     per node with its current epoch, renewed every LeaseRenew. An owner is alive while
//     its node's lease carries the owner's epoch and probes do not find that run dead
//     (probe.go); otherwise the next claim takes the name.
//   - Every node keeps a cache of the names bucket fed by a watch (supervised: restarted
//     from its last revision when it stalls), so Lookup is a local map read.
//   - Each run of a node has a new epoch; at start it deletes (CAS) the entries its
//     earlier runs left. Start refuses a node id whose lease another live process renews.
//
// # Concurrency
//
// Directory's methods are safe for concurrent use and never do network I/O on the
// caller's goroutine: they run on event loops. Claim answers from the cache when it can
// and otherwise queues the claim (bounded: shard.ErrBusy when full) for a worker
// goroutine, which calls the ClaimFunc. Unregister marks the name gone in the cache and
// queues the KV delete (this queue holds at most one entry per name the node owned).
// Lookup takes one partition's read lock and does not allocate. Every goroutine the
// package starts (workers, watches, lease renewal, the start-up sweep) is tracked and
// stopped by Node.Close.
//
// # Caveats
//
//   - Lookup may return a connection of another node (the server forwards to it), never
//     one of an earlier run of its node: connection ids restart with a run.
//   - A killed node is noticed by probe (probe.go) once a renewal of its lease is overdue
//     (LeaseRenew + 500 ms) and its probe subject has no responders; until then records
//     for it are published to a subject nobody reads (its senders time out). A hung node
//     (probes unanswered) is noticed only when its lease expires.
//   - The cache is eventually consistent (a watch event arrives ~0.2 ms after a write on
//     loopback): a claim refused from the cache as taken may have been freed a moment
//     earlier; the client retries. Ownership itself is only ever decided by the KV.
//   - A node that cannot renew its lease stops being ready after LeaseTTL/2 and fences
//     itself LeaseTTL minus a guard after its last renewal was sent, before the lease can
//     expire (fence.go): it then serves no names, and OnFence tells the process to drain.
//     A node cut off from most others is isolated sooner, within 100 ms, and serves no
//     names meanwhile (Lookup, Claim, Serving), since they may take it for dead by probe.
//   - Deleted names leave a delete marker per key in the names bucket.
package cluster
