package config

import "github.com/switchboard/switchboard/server"

// help is the one-line help of every setting, by key: the --help text of its flag and
// the comment above it in --print-config's example. Read-only. A test fails when a field
// of server.Config has no entry here, so new fields are not forgotten.
var help = map[string]string{
	"listen":                   "client TCP address",
	"admin":                    `admin HTTP address (health, metrics, pprof); "off" disables it; off loopback it needs a token`,
	"admin-token-file":         "file holding the bearer token every admin request must carry (or set SWITCHBOARD_ADMIN_TOKEN); required off loopback",
	"admin-pprof":              "serve /debug/pprof/ on the admin listener: on, off, or auto (on for a loopback admin address only)",
	"node-id":                  "this node's id inside connection ids, 1..65535",
	"server-id":                "node name sent to clients in WELCOME; empty means the host name",
	"loops":                    "number of event loops; 0 means GOMAXPROCS (one fewer in a cluster, at least 1)",
	"max-connections":          "cap on concurrent client connections; 0 means as many as the open-file limit allows",
	"max-frame":                "largest frame accepted after the handshake, bytes",
	"log-level":                "log level: debug, info, warn or error (re-read on SIGHUP)",
	"token":                    "shared secret a HELLO must carry; empty means no authentication (prefer token-file or SWITCHBOARD_TOKEN: a flag shows in ps)",
	"token-file":               "file holding the shared token (one line); excludes token",
	"credentials":              "YAML credentials file: users, bcrypt token hashes, permissions (re-read on SIGHUP); excludes token",
	"auth-failures-per-ip":     "failed handshakes per second one address may make before its HELLOs are refused unchecked (0 = off)",
	"max-handshakes":           "connections still in the handshake before new ones get BUSY; 0 means a tenth of max-connections (at least 64)",
	"max-pending":              "messages queued for one connection before the slow-consumer policy applies",
	"max-pending-bytes":        "bytes queued for one connection before the slow-consumer policy applies",
	"ring-size":                "slots in each event loop's cross-loop ring (rounded up to a power of two)",
	"frames-per-wake":          "frames handled per read callback before other connections get a turn",
	"route-credit":             "messages one connection may have on their way to other event loops before its input waits for them to land (flow control; 0 = off)",
	"write-coalesce":           "bytes under which a connection's output from busy poll rounds waits one more round, to go out in one write with the next round's (0 = off)",
	"max-names-per-conn":       "names one connection may register",
	"handshake-timeout":        "time a new connection has to send HELLO and be welcomed",
	"idle-timeout":             "close a connection silent for this long; WELCOME asks clients to ping at a third of it (0 or off = never)",
	"request-timeout":          "timeout of a REQUEST that asks for none",
	"max-request-timeout":      "longest timeout a REQUEST may ask for",
	"tick-interval":            "resolution of the per-loop timer wheel, 1ms..1s",
	"read-buffer-cap":          "gnet's per-loop read buffer, bytes",
	"write-buffer-cap":         "gnet's per-connection outbound buffer chunk, bytes",
	"tcp-delay":                "turn Nagle's algorithm back on (TCP_NODELAY off)",
	"socket-recv-buffer":       "SO_RCVBUF of client sockets, bytes (0 = kernel autotuning)",
	"socket-send-buffer":       "SO_SNDBUF of client sockets, bytes (0 = kernel autotuning)",
	"tcp-keep-alive":           "TCP keepalive idle time for client sockets (0 = off)",
	"tcp-defer-accept":         "TCP_DEFER_ACCEPT on the client listener: a connection is accepted with its first data, or after this long silent (Linux; 0 = off)",
	"max-queue":                "messages queued node-wide (rings + outbound) before senders get QUEUE_FULL",
	"max-queue-bytes":          "bytes of the messages queued node-wide (rings + what the sockets have not taken) before senders get QUEUE_FULL",
	"slow-consumer-timeout":    "close a connection whose output has waited this long without its socket taking it",
	"loop-lag-budget":          "event-loop lag counted as 100% utilisation for zones",
	"drain-period":             "how long a drain (SIGTERM, SIGUSR2) takes to close every connection after GOAWAY (0 = all at once)",
	"peers":                    "comma-separated client addresses of other nodes, sent in GOAWAY and refusals",
	"proxy-protocol-from":      "comma-separated addresses/CIDRs of proxies that must send a PROXY v1/v2 header; its source counts per IP (empty = off)",
	"conn-msg-rate":            "tier 2: messages/s per connection (0 = unlimited; seed 500)",
	"conn-msg-burst":           "per-connection message burst (0 = one second's worth)",
	"conn-byte-rate":           "tier 2: bytes/s per connection (0 = unlimited)",
	"conn-byte-burst":          "per-connection byte burst (0 = one second's worth)",
	"node-msg-rate":            "tier 3: messages/s across the node (0 = unlimited; seed 10000)",
	"node-msg-burst":           "node-wide message burst (0 = one second's worth)",
	"accept-rate":              "tier 1: new connections/s (0 = unlimited; seed 100)",
	"accept-burst":             "accept burst (0 = one second's worth)",
	"max-conns-per-ip":         "tier 1: connections per client address, IPv6 per /64 (0 = unlimited)",
	"breaker-error-rate":       "tier 4: request error rate that opens the node breaker (fraction)",
	"breaker-window":           "window the breaker's error rate is measured over",
	"breaker-min-requests":     "requests in the window below which the breaker stays closed",
	"breaker-open-for":         "how long an open breaker fails fast before probing",
	"breaker-probes":           "half-open probes let through, and successes needed to close",
	"target-error-rate":        "error rate that opens one target's breaker (fraction)",
	"target-min-failures":      "failures in the window below which a target's breaker stays closed",
	"max-targets":              "targets the per-target breaker table tracks",
	"zone-yellow":              "utilisation at which the YELLOW zone starts",
	"zone-orange":              "utilisation at which the ORANGE zone starts (accept rate halved, low priority shed)",
	"zone-red":                 "utilisation at which the RED zone starts (new connections refused, all but control shed)",
	"zone-hysteresis":          "how far below a threshold utilisation must fall to leave a zone (0 = none)",
	"zone-min-dwell":           "time a zone is held before stepping down (0 = none)",
	"cluster":                  "cluster mode: off (a single node), embedded (run NATS in the process) or external (connect to nats-url); docs/CLUSTER.md",
	"cluster-name":             "cluster name: the NATS cluster name and part of the directory's bucket names",
	"cluster-listen":           "embedded NATS route address, host:port",
	"cluster-advertise":        "route address other nodes are told to use; empty means derived from cluster-listen",
	"cluster-link-listen":      "where the other nodes' links arrive (they show a killed node's end at once); empty means cluster-listen's host, any free port; off disables them",
	"cluster-client-advertise": "client address the other nodes send clients to (GOAWAY, refusals); empty means the listen address unless it is a wildcard",
	"cluster-routes":           "comma-separated route addresses of the nodes to join (this node's own may be listed)",
	"nats-url":                 "NATS URL(s), comma-separated, for cluster external",
	"cluster-store-dir":        "embedded JetStream directory, stable across restarts; empty means one under the temporary directory",
	"cluster-replicas":         "copies of the directory's KV buckets, 1..5 (needs as many JetStream servers)",
	"cluster-jetstream":        "embedded: run JetStream, holding a replica of the directory; false uses the other nodes' (needs cluster-routes)",
	"cluster-lease-ttl":        "how long a node's lease outlives its last renewal before its names may be taken over",
	"cluster-lease-renew":      "how often a node renews its lease (at most a third of cluster-lease-ttl)",
	"cluster-forward-queue":    "records waiting to be published to one other node; full means QUEUE_FULL to the sender",
	"cluster-claim-workers":    "goroutines deciding REGISTERs the node's cache cannot answer, each waiting on KV round trips",
	"cluster-claim-batch":      "most claims one worker writes to the KV in one atomic batch while claims queue (1: each alone)",

	KeyProfile: "tuning profile: balanced (default), small, throughput or latency; see switchboard tune show",
	KeyConfig:  "YAML config file",
}

// secret keys are redacted when printed and must not be logged: server.SecretKeys.
// Read-only.
var secret = func() map[string]bool {
	m := make(map[string]bool)
	for _, k := range server.SecretKeys {
		m[k] = true
	}
	return m
}()
