package config

// Section is a group of settings that serve's --help lists together, as nats-server
// groups its options.
type Section struct {
	Name string
	Keys []string // in the order --help lists them
}

// Sections of serve's --help that the binary adds its own flags to.
const (
	SectionConfig  = "Configuration"
	SectionLogging = "Logging"
)

// sections places every setting, --profile and --config in one section of serve's --help.
// Read-only. A test fails when a field of server.Config is in no section (or in two), so
// that a new field cannot fall out of --help's grouping.
var sections = []Section{
	{SectionConfig, []string{KeyConfig, KeyProfile}},
	{"Listeners", []string{"listen", "admin", "admin-token-file", "admin-pprof", "node-id", "server-id", "peers", "proxy-protocol-from", "loops",
		"tcp-delay", "tcp-keep-alive", "tcp-defer-accept"}},
	{"Security", []string{"token", "token-file", "credentials", "auth-failures-per-ip", "max-handshakes"}},
	{"Limits", []string{"max-connections", "max-frame", "max-pending", "max-pending-bytes",
		"max-names-per-conn", "max-queue", "max-queue-bytes", "ring-size", "frames-per-wake", "route-credit", "write-coalesce"}},
	{"Timeouts", []string{"handshake-timeout", "idle-timeout", "request-timeout", "max-request-timeout",
		"slow-consumer-timeout", "drain-period", "tick-interval"}},
	{"Buffers", []string{"read-buffer-cap", "write-buffer-cap", "socket-recv-buffer", "socket-send-buffer"}},
	{"Overload", []string{"accept-rate", "accept-burst", "max-conns-per-ip",
		"conn-msg-rate", "conn-msg-burst", "conn-byte-rate", "conn-byte-burst", "node-msg-rate", "node-msg-burst",
		"breaker-error-rate", "breaker-window", "breaker-min-requests", "breaker-open-for", "breaker-probes",
		"target-error-rate", "target-min-failures", "max-targets",
		"zone-yellow", "zone-orange", "zone-red", "zone-hysteresis", "zone-min-dwell", "loop-lag-budget"}},
	{"Cluster", []string{"cluster", "cluster-name", "cluster-listen", "cluster-advertise", "cluster-link-listen", "cluster-client-advertise", "cluster-routes",
		"nats-url", "cluster-store-dir", "cluster-replicas", "cluster-jetstream", "cluster-lease-ttl", "cluster-lease-renew",
		"cluster-forward-queue", "cluster-claim-workers", "cluster-claim-batch"}},
	{SectionLogging, []string{"log-level"}},
}

// Sections returns the sections of serve's --help in order, each setting, --profile and
// --config in exactly one. The caller may modify the result.
func Sections() []Section {
	out := make([]Section, len(sections))
	for i, s := range sections {
		out[i] = Section{Name: s.Name, Keys: append([]string(nil), s.Keys...)}
	}
	return out
}
