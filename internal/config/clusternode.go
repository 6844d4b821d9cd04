package config

import "github.com/switchboard/switchboard/cluster"

// How switchboard serve sizes a cluster node differently from a single one. Here rather
// than in cmd/switchboard so that --print-config shows the same values serve runs with.

// ClusterLoops is the event-loop count of a cluster node whose loops setting is auto: one
// fewer than GOMAXPROCS, at least 1. gnet's loops block in epoll_wait holding their
// scheduler slot (P) until the runtime's sysmon takes it back, up to ~10 ms later; with as
// many loops as Ps, the NATS goroutines that carry every cross-node message wait for that,
// twice per request. Measured on 2 cores (docs/BENCHMARKS.md, cluster figures): cross-node
// REQUEST p50 6.4 ms with 2 loops, 0.65 ms with 1, throughput unchanged.
func ClusterLoops(gomaxprocs int) int { return max(1, gomaxprocs-1) }

// JetStreamNode reports whether the node runs an embedded NATS server with JetStream,
// holding a replica of the directory's buckets.
func (n Node) JetStreamNode() bool {
	return n.Cluster == cluster.ModeEmbedded && n.ClusterJetstream
}

// ClusterGOGC is the GOGC of a node with JetStream whose profile sets gogc (the GOGC
// variable still wins): half of it, at least 10. Such a node's live heap holds the
// directory for the whole cluster (its cache of every name, the stream's per-subject
// index and block buffers), whatever its own connections, and GOGC lets the heap grow
// to live × (1 + GOGC/100) before collecting. Measured with 6 nodes, 3 with JetStream,
// and 100,000 names (docs/BENCHMARKS.md, "Cluster: 6 nodes, 100K names"): GOGC 50
// instead of 100 took ~15-20 MiB off each JetStream node's RSS (116-139 MiB at 100) and
// kept its heap input to the zones (memory over GOMEMLIMIT) under ORANGE's 0.75, which
// GOGC 100 came within 0.01 of. A node without JetStream keeps the profile's GOGC: it
// held ~64 MiB at 100.
func ClusterGOGC(profile int) int { return max(10, profile/2) }
