package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/switchboard/switchboard/cluster"
	"github.com/switchboard/switchboard/server"
)

// Defaults of the node's own settings.
const (
	DefaultAdmin       = "127.0.0.1:7401"
	DefaultAdminPprof  = "auto"
	DefaultLogLevel    = "info"
	DefaultDrainPeriod = 10 * time.Second

	// Cluster defaults (docs/CLUSTER.md): the cluster package's own, so the two cannot
	// drift apart.
	DefaultCluster             = cluster.ModeOff
	DefaultClusterName         = cluster.DefaultName
	DefaultClusterListen       = cluster.DefaultListen
	DefaultClusterReplicas     = cluster.DefaultReplicas
	DefaultClusterJetstream    = cluster.DefaultJetStream
	DefaultClusterLeaseTTL     = cluster.DefaultLeaseTTL
	DefaultClusterLeaseRenew   = cluster.DefaultLeaseRenew
	DefaultClusterForwardQueue = cluster.DefaultForwardQueue
	DefaultClusterClaimWorkers = cluster.DefaultClaimWorkers
	DefaultClusterClaimBatch   = cluster.DefaultClaimBatch
)

// EnvAdminToken is the environment variable that may hold the admin bearer token (see
// Node.AdminTokenFile). It is no setting: no flag or file key sets the token itself.
const EnvAdminToken = EnvPrefix + "ADMIN_TOKEN"

// Node is the configuration of a switchboard node, the binary: the server's settings and
// the binary's own, which the server never reads. server.Config is embedded so that its
// keys stay flat (listen, max-connections, conn-msg-rate, ...) next to the node's
// (admin, log-level, drain-period).
type Node struct {
	server.Config

	// Admin is the admin HTTP address (metrics, health, pprof), served by switchboard
	// serve. Default "127.0.0.1:7401"; "off" disables it. An address that is not loopback
	// requires an admin token (AdminTokenFile or SWITCHBOARD_ADMIN_TOKEN).
	Admin string
	// AdminTokenFile names a file holding the bearer token that every admin request must
	// carry (Authorization: Bearer <token>); surrounding white space is ignored. The token
	// may come from the environment variable SWITCHBOARD_ADMIN_TOKEN instead (EnvAdminToken),
	// never from a flag's value, which any user can read in the process list. Default "":
	// no token, which only a loopback admin address allows.
	AdminTokenFile string
	// AdminPprof serves /debug/pprof/ on the admin listener: on, off, or auto (default):
	// on for a loopback admin address, off otherwise.
	AdminPprof string
	// LogLevel is the log level: debug, info, warn or error. Default info. switchboard
	// serve applies it and re-reads it on SIGHUP.
	LogLevel string
	// DrainPeriod is how long a drain (SIGTERM, SIGUSR2) takes to close every connection
	// after GOAWAY; it is passed to server.Drain. Default 10s; 0 closes them all at once.
	DrainPeriod time.Duration
	// TokenFile names a file holding the shared token (its first line), so that the
	// secret is on no command line; Load reads it into Token. Default "": none. Excludes
	// Token.
	TokenFile string
	// Credentials names a YAML credentials file (LoadCredentials): per-user tokens and
	// permissions instead of one shared token. switchboard serve reads it at start and
	// on SIGHUP. Default "": none. Excludes Token and TokenFile.
	Credentials string

	// Cluster is the cluster mode (docs/CLUSTER.md): off (default: a single node),
	// embedded (run a NATS server in the process, joined to the other nodes' through
	// ClusterRoutes) or external (connect to the NATS system at NatsURL).
	Cluster string
	// ClusterName names the cluster: the NATS cluster name (embedded) and part of the
	// directory's bucket names. Default "switchboard".
	ClusterName string
	// ClusterListen is the embedded NATS server's route address, host:port. Default
	// "127.0.0.1:7402"; nodes on several hosts need a routable address.
	ClusterListen string
	// ClusterAdvertise is the route address other nodes are told to use. Default "":
	// NATS derives it from ClusterListen.
	ClusterAdvertise string
	// ClusterLinkListen is where the node listens for the other nodes' links, by which
	// it sees a killed node's process end at once (cluster.Config.LinkListen). Default
	// "": cluster-listen's host, any free port; "off" disables the links.
	ClusterLinkListen string
	// ClusterClientAdvertise is this node's client address (host:port) as the other nodes
	// give it to clients they send here (GOAWAY and TRY_OTHER refusals list the live
	// nodes, least loaded first). Default "": the listen address when its host is a
	// specific address; with a wildcard listen address (0.0.0.0, ::) set it, or the
	// other nodes suggest this one to nobody.
	ClusterClientAdvertise string
	// ClusterRoutes lists the route addresses of the nodes to join, comma-separated
	// host:port; it may include this node's own, so every node can share one list.
	// Default "": none, a cluster of one (JetStream standalone; cluster-replicas 1).
	ClusterRoutes string
	// NatsURL is the NATS URL (comma-separated for several servers) of external mode.
	// Default "".
	NatsURL string
	// ClusterStoreDir is the embedded server's JetStream directory; keep it stable
	// across restarts. Default "": switchboard-<cluster-name>-node-<node-id> in the
	// system's temporary directory.
	ClusterStoreDir string
	// ClusterReplicas is the number of copies of the directory's KV buckets, 1..5.
	// Default 3; a cluster with fewer JetStream servers never becomes ready.
	ClusterReplicas int
	// ClusterJetstream says whether the embedded NATS server runs JetStream, that is,
	// holds a replica of the directory's buckets (embedded only). Default true. Nodes
	// without it use the buckets through their routes and keep no stream, raft log or
	// store directory: in a cluster of more than cluster-replicas nodes, cluster-replicas
	// of them with JetStream are enough, and the others use less memory per name. A node
	// without cluster-routes must have it.
	ClusterJetstream bool
	// ClusterLeaseTTL is how long a node's lease outlives its last renewal; then its
	// names may be taken over. Default 15s, at least 1s; it must exceed a KV leader
	// failover (4-9 s).
	ClusterLeaseTTL time.Duration
	// ClusterLeaseRenew is how often the lease is renewed. Default 1s, at most a third
	// of ClusterLeaseTTL.
	ClusterLeaseRenew time.Duration
	// ClusterForwardQueue bounds the records (messages, requests, replies, outcomes)
	// waiting to be published to one other node; when it is full, senders get
	// QUEUE_FULL. Default 4096, at least 1.
	ClusterForwardQueue int
	// ClusterClaimWorkers is the number of goroutines deciding this node's claims
	// (REGISTERs the node's cache cannot answer), each waiting on KV round trips.
	// Default 16, at least 1: a killed node's ~16K clients re-registering on five
	// survivors were back within p99 5.4-7.3 s with 16, 7.4-7.8 s with 4
	// (docs/BENCHMARKS.md).
	ClusterClaimWorkers int
	// ClusterClaimBatch is the most claims one worker writes to the KV in one atomic
	// batch while claims wait for workers; 1 writes each alone. Default 64, 1 to 1000.
	ClusterClaimBatch int
}

// DefaultNode returns a Node with every default filled in (server.DefaultConfig for the
// server's settings): Load starts from it.
func DefaultNode() Node {
	return Node{
		Config:      server.DefaultConfig(),
		Admin:       DefaultAdmin,
		AdminPprof:  DefaultAdminPprof,
		LogLevel:    DefaultLogLevel,
		DrainPeriod: DefaultDrainPeriod,

		Cluster:             DefaultCluster,
		ClusterName:         DefaultClusterName,
		ClusterListen:       DefaultClusterListen,
		ClusterReplicas:     DefaultClusterReplicas,
		ClusterJetstream:    DefaultClusterJetstream,
		ClusterLeaseTTL:     DefaultClusterLeaseTTL,
		ClusterLeaseRenew:   DefaultClusterLeaseRenew,
		ClusterForwardQueue: DefaultClusterForwardQueue,
		ClusterClaimWorkers: DefaultClusterClaimWorkers,
		ClusterClaimBatch:   DefaultClusterClaimBatch,
	}
}

// Validate reports every problem in n, each naming its setting: the server's
// (server.Config.Validate, which applies no defaults) and the node's own.
func (n *Node) Validate() error {
	var errs []error
	if err := n.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	if n.Admin != "off" {
		if _, _, err := net.SplitHostPort(n.Admin); err != nil {
			errs = append(errs, fmt.Errorf("config: admin: want host:port or off: %v", err))
		}
	}
	switch n.AdminPprof {
	case "auto", "on", "off":
	default:
		errs = append(errs, fmt.Errorf("config: admin-pprof: want auto, on or off, got %q", n.AdminPprof))
	}
	switch n.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("config: log-level: want debug, info, warn or error, got %q", n.LogLevel))
	}
	if n.DrainPeriod < 0 {
		errs = append(errs, fmt.Errorf("config: drain-period: must not be negative, got %v", n.DrainPeriod))
	}
	if n.Credentials != "" && n.Token != "" {
		errs = append(errs, errors.New("config: credentials: set token (or token-file) or credentials, not both"))
	}
	errs = append(errs, n.validateCluster()...)
	return errors.Join(errs...)
}

// validateCluster checks the cluster settings, naming each key. The values that only
// matter in a mode are checked in that mode only.
func (n *Node) validateCluster() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("config: "+format, args...)) }
	switch n.Cluster {
	case "off":
		return nil
	case "embedded", "external":
	default:
		bad("cluster: want off, embedded or external, got %q", n.Cluster)
		return errs
	}
	if !clusterNameOK(n.ClusterName) {
		bad("cluster-name: want 1..64 letters, digits, '-' or '_', got %q", n.ClusterName)
	}
	if n.Cluster == "embedded" {
		if _, _, err := net.SplitHostPort(n.ClusterListen); err != nil {
			bad("cluster-listen: want host:port: %v", err)
		}
		if n.ClusterAdvertise != "" {
			if _, _, err := net.SplitHostPort(n.ClusterAdvertise); err != nil {
				bad("cluster-advertise: want host:port: %v", err)
			}
		}
		if strings.Trim(n.ClusterRoutes, ", ") == "" && !n.ClusterJetstream {
			bad("cluster-jetstream: false needs cluster-routes: a node without routes is a cluster of one, and its own JetStream holds the directory")
		}
		for _, r := range strings.Split(n.ClusterRoutes, ",") {
			if r = strings.TrimSpace(r); r == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(strings.TrimPrefix(r, "nats://")); err != nil {
				bad("cluster-routes: %q: want host:port: %v", r, err)
			}
		}
		if strings.Trim(n.ClusterRoutes, ", ") == "" && n.ClusterReplicas > 1 {
			bad("cluster-replicas: %d needs cluster-routes: a node without routes is a cluster of one, which holds one replica", n.ClusterReplicas)
		}
	}
	if n.ClusterLinkListen != "" && n.ClusterLinkListen != "off" {
		if _, _, err := net.SplitHostPort(n.ClusterLinkListen); err != nil {
			bad("cluster-link-listen: want host:port or off: %v", err)
		}
	}
	if n.ClusterClientAdvertise != "" {
		if _, _, err := net.SplitHostPort(n.ClusterClientAdvertise); err != nil {
			bad("cluster-client-advertise: want host:port: %v", err)
		}
	}
	if n.Cluster == "external" && strings.TrimSpace(n.NatsURL) == "" {
		bad("nats-url: required when cluster is external")
	}
	if n.ClusterReplicas < 1 || n.ClusterReplicas > 5 {
		bad("cluster-replicas: want 1..5, got %d", n.ClusterReplicas)
	}
	if n.ClusterLeaseTTL < time.Second {
		bad("cluster-lease-ttl: want at least 1s, got %v", n.ClusterLeaseTTL)
	}
	if n.ClusterLeaseRenew <= 0 || 3*n.ClusterLeaseRenew > n.ClusterLeaseTTL {
		bad("cluster-lease-renew: want more than 0 and at most a third of cluster-lease-ttl (%v), got %v",
			n.ClusterLeaseTTL/3, n.ClusterLeaseRenew)
	}
	if n.ClusterForwardQueue < 1 {
		bad("cluster-forward-queue: want at least 1, got %d", n.ClusterForwardQueue)
	}
	if n.ClusterClaimWorkers < 1 {
		bad("cluster-claim-workers: want at least 1, got %d", n.ClusterClaimWorkers)
	}
	if n.ClusterClaimBatch < 1 || n.ClusterClaimBatch > cluster.MaxClaimBatch {
		bad("cluster-claim-batch: want 1 to %d, got %d", cluster.MaxClaimBatch, n.ClusterClaimBatch)
	}
	return errs
}

func clusterNameOK(s string) bool {
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
