package cluster

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Modes of Config.Mode.
const (
	ModeOff      = "off"      // single node: no NATS, the server's own registry
	ModeEmbedded = "embedded" // this process runs a nats-server that joins the others' through routes
	ModeExternal = "external" // connect to a NATS system by URL
)

// Config is how a node joins the cluster. The zero value is not usable: start from
// DefaultConfig and set NodeID (and, for ModeEmbedded, Routes; for ModeExternal, URL).
type Config struct {
	// Mode is ModeOff (default), ModeEmbedded or ModeExternal.
	Mode string
	// NodeID is this node's id, the node part of its connection ids (server's node-id),
	// 1..65535. It must be unique across the cluster: Start refuses to run when another
	// live node holds its lease.
	NodeID uint16
	// Name is the cluster's name: the NATS cluster name in ModeEmbedded and part of the
	// KV bucket names in both modes. Default "switchboard". Letters, digits, '-' and '_'.
	Name string
	// Listen is the embedded server's route address, host:port. Default
	// "127.0.0.1:7402"; use a routable address for nodes on several hosts. Port 0 picks a
	// free port (which other nodes cannot know: this node can only dial them).
	Listen string
	// Advertise is the route address other nodes are told to use, host:port; default ""
	// lets NATS choose from Listen.
	Advertise string
	// Routes are the route addresses of the nodes to join, comma-separated host:port (or
	// nats://host:port). The list may hold this node's own address, so that every node
	// can be given the same list. Default "": a cluster of one, which runs JetStream
	// standalone (no route listener) and needs Replicas 1.
	Routes string
	// URL is the NATS server URL(s) of ModeExternal, comma-separated.
	URL string
	// StoreDir is the embedded server's JetStream directory. Keep it, and NodeID, stable
	// across restarts: it is the node's raft identity. Default "": a directory named
	// after Name and NodeID under os.TempDir().
	StoreDir string
	// Replicas is the number of copies of the KV buckets, 1..5. Default 3; a cluster
	// with fewer JetStream servers than Replicas never becomes ready.
	Replicas int
	// JetStream says whether the embedded server runs JetStream, that is, holds replicas
	// of the KV buckets (ModeEmbedded only). Default true. A node without it reaches the
	// buckets through its routes to the nodes that have it and keeps no stream, raft log
	// or store directory of its own: in a larger cluster, Replicas nodes (or a few more)
	// with JetStream are enough. A node without routes must have it.
	JetStream bool
	// LeaseTTL is how long a node's lease lives without renewal; after it, the node's
	// names may be taken over by other nodes' claims. Default 15s; it must exceed a KV
	// leader failover (4–9 s measured) plus LeaseRenew, or live nodes lose their leases
	// while the bucket elects a leader.
	LeaseTTL time.Duration
	// LeaseRenew is how often the lease is renewed. Default 1s; at most LeaseTTL/3.
	LeaseRenew time.Duration
	// ClaimQueue bounds the claims waiting for the KV (Claim answers shard.ErrBusy when
	// it is full). Default 4096.
	ClaimQueue int
	// ClaimWorkers is the number of goroutines deciding claims, each waiting on KV round
	// trips. Default 16: a killed node's ~16K clients re-registering on five survivors were
	// re-registered within p99 5.4-7.3 s with 16 (three runs), 7.4-7.8 s with 4 (two)
	// (docs/BENCHMARKS.md).
	ClaimWorkers int
	// ClaimBatch is the most claims a worker writes in one JetStream atomic batch while
	// claims wait in the queue (batch.go); 1 writes each alone. Default 64, at most
	// MaxClaimBatch.
	ClaimBatch int
	// OpTimeout bounds one KV operation. Default 5s.
	OpTimeout time.Duration
	// ClaimReadTimeout bounds each read a claim makes from a KV stream's leader (the
	// name's entry, its owner's lease, the read-back of a write that timed out); it is
	// at most OpTimeout. Default 1s. While a bucket has no leader (its leader's node was
	// killed and the election, 4-9 s, is not over) JetStream answers no such read, and a
	// claim waiting for one held its claim worker for OpTimeout; a read changes nothing,
	// so the claim answers UNAVAILABLE after this timeout instead and the client asks
	// again after the retry-after (1 s). A leader answers a read in milliseconds.
	ClaimReadTimeout time.Duration
	// ForwardQueue bounds the records (messages, requests, replies, outcomes) waiting to
	// be published to one other node; a full queue refuses with QUEUE_FULL. Default
	// 4096. Each queue also holds at most one NATS payload of bytes (max_payload: 8 MiB
	// for the embedded server, the NATS system's setting in external mode).
	ForwardQueue int
	// LinkListen is where this node listens for the other nodes' links (link.go), by
	// which it sees a killed node's process end at once instead of when its routes close.
	// Default "": the host of Listen, any free port (the others ask for it over NATS).
	// Set a routable host:port when Listen's host is not reachable from the other nodes
	// (ModeExternal on several hosts); LinkOff ("off") disables links, and killed nodes are
	// then found by their overdue renewal and their routes' close.
	LinkListen string
	// ClientAddr is this node's client address as other nodes should pass it on to
	// clients; it is written into the lease. Default "".
	ClientAddr string

	// Test hooks; unset outside this package's tests.
	seed        bool              // ModeEmbedded: cluster mode although Routes is empty (the others are given this node as their route)
	routeListen func(addr string) // ModeEmbedded: called with the route listener's address once it listens
	watchStart  func(what string) // called before each watch of the bucket what ("names", "leases") starts
	markerTTL   time.Duration     // a removed name's marker's TTL (deleteName); nameMarkerTTL when 0
	// goneSweepEvery: the sweeper's scans for entries of runs gone for good (gone.go);
	// goneSweepEvery (the constant) when 0.
	goneSweepEvery time.Duration
}

// LinkOff as Config.LinkListen disables the links between nodes.
const LinkOff = "off"

// Defaults of Config.
const (
	DefaultName         = "switchboard"
	DefaultListen       = "127.0.0.1:7402"
	DefaultReplicas     = 3
	DefaultJetStream    = true
	DefaultLeaseTTL     = 15 * time.Second
	DefaultLeaseRenew   = 1 * time.Second
	DefaultClaimQueue   = 4096
	DefaultClaimWorkers = 16
	DefaultClaimBatch   = 64
	// MaxClaimBatch is nats-server's default limit on the messages of one atomic batch.
	MaxClaimBatch    = 1000
	DefaultOpTimeout = 5 * time.Second
	// DefaultClaimReadTimeout: a stream leader answers a read in milliseconds, so 1 s
	// is far from a slow answer; and it is the UNAVAILABLE retry-after, so a claim that
	// met an election is asked again at most about 2 s after its read was sent.
	DefaultClaimReadTimeout = 1 * time.Second
	DefaultForwardQueue     = 4096
)

// DefaultConfig returns a Config with every default filled in, Mode off.
func DefaultConfig() Config {
	return Config{
		Mode:             ModeOff,
		Name:             DefaultName,
		Listen:           DefaultListen,
		Replicas:         DefaultReplicas,
		JetStream:        DefaultJetStream,
		LeaseTTL:         DefaultLeaseTTL,
		LeaseRenew:       DefaultLeaseRenew,
		ClaimQueue:       DefaultClaimQueue,
		ClaimWorkers:     DefaultClaimWorkers,
		ClaimBatch:       DefaultClaimBatch,
		OpTimeout:        DefaultOpTimeout,
		ClaimReadTimeout: DefaultClaimReadTimeout,
		ForwardQueue:     DefaultForwardQueue,
	}
}

// Validate reports every problem in c, each naming its field. It applies no defaults.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("cluster: "+format, args...)) }
	switch c.Mode {
	case ModeOff:
		return nil
	case ModeEmbedded, ModeExternal:
	default:
		bad("Mode: want off, embedded or external, got %q", c.Mode)
	}
	if c.NodeID == 0 {
		bad("NodeID: must be 1..65535")
	}
	if !validName(c.Name) {
		bad("Name: want letters, digits, '-' or '_', got %q", c.Name)
	}
	if c.Mode == ModeEmbedded {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			bad("Listen: want host:port: %v", err)
		}
		if c.Advertise != "" {
			if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
				bad("Advertise: want host:port: %v", err)
			}
		}
		for _, r := range splitList(c.Routes) {
			if _, _, err := net.SplitHostPort(strings.TrimPrefix(r, "nats://")); err != nil {
				bad("Routes: %q: want host:port: %v", r, err)
			}
		}
		if len(splitList(c.Routes)) == 0 && !c.seed && c.Replicas > 1 {
			bad("Replicas: %d needs Routes: a cluster of one holds one replica", c.Replicas)
		}
		if len(splitList(c.Routes)) == 0 && !c.seed && !c.JetStream {
			bad("JetStream: a node without routes must run JetStream: it is the only server holding the buckets")
		}
	}
	if c.LinkListen != "" && c.LinkListen != LinkOff {
		if _, _, err := net.SplitHostPort(c.LinkListen); err != nil {
			bad("LinkListen: want host:port or %q: %v", LinkOff, err)
		}
	}
	if c.Mode == ModeExternal && strings.TrimSpace(c.URL) == "" {
		bad("URL: required in external mode")
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		bad("Replicas: want 1..5, got %d", c.Replicas)
	}
	if c.LeaseTTL < time.Second {
		bad("LeaseTTL: want at least 1s (the KV's expiry resolution), got %v", c.LeaseTTL)
	}
	if c.LeaseRenew <= 0 || c.LeaseRenew*3 > c.LeaseTTL {
		bad("LeaseRenew: want more than 0 and at most LeaseTTL/3 (%v), got %v", c.LeaseTTL/3, c.LeaseRenew)
	}
	if c.ClaimQueue < 1 {
		bad("ClaimQueue: want at least 1, got %d", c.ClaimQueue)
	}
	if c.ClaimWorkers < 1 {
		bad("ClaimWorkers: want at least 1, got %d", c.ClaimWorkers)
	}
	if c.ClaimBatch < 1 || c.ClaimBatch > MaxClaimBatch {
		bad("ClaimBatch: want 1 to %d, got %d", MaxClaimBatch, c.ClaimBatch)
	}
	if c.ForwardQueue < 1 {
		bad("ForwardQueue: want at least 1, got %d", c.ForwardQueue)
	}
	if c.OpTimeout <= 0 {
		bad("OpTimeout: want more than 0, got %v", c.OpTimeout)
	}
	if c.ClaimReadTimeout <= 0 {
		bad("ClaimReadTimeout: want more than 0, got %v", c.ClaimReadTimeout)
	}
	return errors.Join(errs...)
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// storeDir is StoreDir or its default.
func (c *Config) storeDir(tmp string) string {
	if c.StoreDir != "" {
		return c.StoreDir
	}
	return filepath.Join(tmp, "switchboard-"+c.Name+"-node-"+strconv.Itoa(int(c.NodeID)))
}

// serverName is the embedded server's name, its JetStream peer identity: stable for a
// node id.
func (c *Config) serverName() string { return "node-" + strconv.Itoa(int(c.NodeID)) }
