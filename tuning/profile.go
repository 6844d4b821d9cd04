package tuning

import (
	"strconv"
	"time"
)

// Byte sizes.
const (
	KiB = 1 << 10
	MiB = 1 << 20
)

// Default is the profile applied when none is named.
const Default = "balanced"

// Profile is a named set of settings for one kind of node: Go runtime settings and the
// node settings they go with. It is plain data; Profiles returns fresh copies, so
// changing one changes nothing else.
type Profile struct {
	// Name is how the profile is chosen: --profile, SWITCHBOARD_PROFILE, "profile:" in
	// the config file.
	Name string
	// Intent says, in one paragraph, what the profile is for and what it gives up.
	Intent string
	// MemoryBudget is the resident memory one node is built to stay within, bytes.
	MemoryBudget int64
	// Connections is the number of connections one node is built for; tune check uses it
	// as the default target and to work out how many nodes a target needs.
	Connections int
	// GOGC is the garbage collector's target percentage (debug.SetGCPercent); 0 leaves the
	// runtime's value (100 unless the GOGC variable says otherwise).
	GOGC int
	// GOMEMLIMIT is the runtime's soft memory limit in bytes (debug.SetMemoryLimit); 0
	// sets none. The server's zones measure the heap against it.
	GOMEMLIMIT int64
	// GOMAXPROCS is the number of OS threads running Go code; 0 leaves the runtime's
	// default, which since Go 1.25 follows the CPU count and the cgroup CPU limit.
	GOMAXPROCS int
	// Settings holds the node settings the profile sets, by config key, as text in the
	// syntax of a flag or of the config file: "read-buffer-cap": "16384",
	// "idle-timeout": "2m0s". Every other setting keeps its default.
	//
	// Keys and text rather than a typed struct, because the typed struct would be
	// server.Config and tuning must not import server (imports point one way: cmd wires
	// everything, server needs none of tuning); a copy of those fields in tuning would
	// drift. As text, a profile's values go through the same parser, validation and
	// source tracking as a file's (internal/config applies them, and its tests check that
	// every key is a setting and every value parses), and a profile can set an explicit 0
	// or off, which a "non-zero fields" struct could not.
	Settings map[string]string
	// Why explains the choice of each server setting, by config key (read-buffer-cap, ...),
	// for tune show and docs/TUNING.md.
	Why map[string]string
}

// Profiles returns every profile, the default (balanced) first. Each call returns new
// values. Safe for concurrent use.
func Profiles() []Profile {
	return []Profile{balanced(), small(), throughput(), latency()}
}

// Names returns the profile names in Profiles order.
func Names() []string {
	ps := Profiles()
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return names
}

// Lookup returns the profile with the given name. Safe for concurrent use.
func Lookup(name string) (Profile, bool) {
	for _, p := range Profiles() {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}

// size and dur write a setting's value as the config syntax expects it.
func size(n int) string          { return strconv.Itoa(n) }
func dur(d time.Duration) string { return d.String() }

func balanced() Profile {
	return Profile{
		Name: "balanced",
		Intent: "General-purpose nodes, and the default: switchboard's built-in server settings, " +
			"which balance throughput, latency and memory (64 KiB gnet buffers, 512 frames per " +
			"wake, 1,000 pending messages per connection, no rate limits: the zones protect the " +
			"node). GOGC " +
			"stays at Go's 100; a 180 MiB GOMEMLIMIT gives the garbage collector, and the zones' " +
			"heap input, a ceiling inside a 200 MiB node. Choose another profile when memory, " +
			"throughput or latency matters more than the other two.",
		MemoryBudget: 200 * MiB,
		Connections:  100_000,
		GOGC:         100,
		GOMEMLIMIT:   180 * MiB,
		Settings:     map[string]string{},
		Why:          map[string]string{},
	}
}

func small() Profile {
	return Profile{
		Name: "small",
		Intent: "Many mostly idle connections in little memory: 100,000 connections in about " +
			"150 MiB of RSS per node (presence, notifications, device fleets). It trades peak " +
			"throughput for memory: small gnet buffers, short per-connection queues, fewer " +
			"names per connection, a lower GOGC and a 140 MiB GOMEMLIMIT (the rest of the " +
			"150 MiB is the binary's resident code and what the runtime does not count).",
		MemoryBudget: 150 * MiB,
		Connections:  100_000,
		// GOGC 25 measured 976 B RSS per idle connection at 15K (GOGC 50: 1,081 B) with no
		// measurable echo throughput cost (docs/BENCHMARKS.md).
		GOGC:       25,
		GOMEMLIMIT: 140 * MiB,
		Settings: map[string]string{
			"read-buffer-cap":    size(16 * KiB),
			"write-buffer-cap":   size(4 * KiB),
			"max-pending":        size(256),
			"max-pending-bytes":  size(256 * KiB),
			"ring-size":          size(4096),
			"max-queue":          size(20_000),
			"max-queue-bytes":    size(32 * MiB),
			"max-names-per-conn": size(16),
			"idle-timeout":       dur(120 * time.Second),
			"accept-rate":        size(2000),
		},
		Why: map[string]string{
			"read-buffer-cap": "one buffer per event loop, not per connection: 16 KiB still reads " +
				"hundreds of small frames per syscall and saves 48 KiB per loop",
			"write-buffer-cap": "per connection, but only while it has unsent output: caps the " +
				"ring a backlogged connection keeps (gnet's minimum is 1 KiB); the rest spills " +
				"into list nodes that are freed as they drain",
			"max-pending": "a slow consumer is cut off after 256 queued messages instead of 1,000",
			"max-pending-bytes": "256 KiB per connection instead of 4 MiB: a few thousand slow " +
				"consumers cannot fill the node",
			"ring-size":          "4,096 cross-loop slots per loop: enough for bursts, half the default memory",
			"max-queue":          "20,000 messages queued node-wide before QUEUE_FULL",
			"max-queue-bytes":    "32 MiB of queued messages node-wide instead of 64 MiB: room for 100K connections in 140 MiB",
			"max-names-per-conn": "16 names per connection keep the registry small at 100K connections",
			"idle-timeout": "120 s: WELCOME asks for a ping every 40 s, so 100K idle clients that " +
				"follow it send about 2,500 pings/s instead of 3,300 at the 90 s default (the Go " +
				"client pings twice as often)",
			"accept-rate": "2,000 new connections/s: 100K clients reconnecting after a restart " +
				"take about 50 s instead of hitting the node at once",
		},
	}
}

func throughput() Profile {
	return Profile{
		Name: "throughput",
		Intent: "As many frames per second per core as possible, for busy pipelined " +
			"connections (fan-out, relays, batch producers). Syscalls dominate the cost here, so " +
			"it reads, writes and handles more frames per wake, allows deeper queues and " +
			"collects garbage less often (GOGC 200), inside a 512 MiB node (GOMEMLIMIT 460 " +
			"MiB). It gives up memory per connection and some tail latency under load.",
		MemoryBudget: 512 * MiB,
		Connections:  50_000,
		GOGC:         200,
		GOMEMLIMIT:   460 * MiB,
		Settings: map[string]string{
			"read-buffer-cap":   size(256 * KiB),
			"write-buffer-cap":  size(256 * KiB),
			"frames-per-wake":   size(4096),
			"max-pending":       size(4000),
			"max-pending-bytes": size(16 * MiB),
			"ring-size":         size(32_768),
			"max-queue":         size(200_000),
			"max-queue-bytes":   size(192 * MiB),
			"write-coalesce":    size(16 * KiB),
		},
		Why: map[string]string{
			"read-buffer-cap": "256 KiB per event loop: one read() brings in four times as many " +
				"pipelined frames",
			"write-buffer-cap": "256 KiB: a busy connection's output stays in one ring, " +
				"written with fewer syscalls",
			"frames-per-wake":   "4,096 frames per read callback before yielding: fewer wake-ups per frame",
			"max-pending":       "4,000 messages per connection before the slow-consumer policy",
			"max-pending-bytes": "16 MiB per connection",
			"ring-size":         "32,768 cross-loop slots per loop: bursts of routed traffic fit",
			"max-queue":         "200,000 messages queued node-wide before QUEUE_FULL",
			"max-queue-bytes":   "192 MiB of queued messages node-wide, in proportion to the 460 MiB GOMEMLIMIT",
			"write-coalesce": "after a busy poll round that its loop went into without a pause, a connection's " +
				"output under 16 KiB waits one more round to be written with the next round's: fewer writes " +
				"per routed message, up to a round (about a millisecond when the loop goes quiet) later",
		},
	}
}

func latency() Profile {
	return Profile{
		Name: "latency",
		Intent: "Low and predictable request latency (interactive request/reply, RPC). A busy " +
			"connection yields after a few frames so that others are not queued behind it, " +
			"queues are short so that a slow consumer is refused early instead of building " +
			"delay, TCP_NODELAY stays on, timers tick every 10 ms, and the zones react to 20 ms " +
			"of loop lag. GOGC 200 means fewer collections and fewer GC assists on the loops, " +
			"inside a 256 MiB node (GOMEMLIMIT 230 MiB). It gives up peak throughput.",
		MemoryBudget: 256 * MiB,
		Connections:  50_000,
		GOGC:         200,
		GOMEMLIMIT:   230 * MiB,
		Settings: map[string]string{
			"frames-per-wake":       size(32),
			"max-pending":           size(200),
			"max-pending-bytes":     size(1 * MiB),
			"ring-size":             size(4096),
			"max-queue":             size(20_000),
			"max-queue-bytes":       size(32 * MiB),
			"tick-interval":         dur(10 * time.Millisecond),
			"loop-lag-budget":       dur(20 * time.Millisecond),
			"slow-consumer-timeout": dur(5 * time.Second),
			"route-credit":          size(16),
		},
		Why: map[string]string{
			"frames-per-wake": "32 frames per read callback: a pipelining connection cannot hold " +
				"its loop for long",
			"route-credit": "16 messages per connection on their way to other event loops, then " +
				"its input waits: routed messages wait less in the rings (p99 halved in a routing " +
				"benchmark), at some throughput for connections that pipeline deeply",
			"max-pending":           "200 queued messages per connection: past that, queueing is delay",
			"max-pending-bytes":     "1 MiB per connection",
			"ring-size":             "4,096 cross-loop slots per loop: QUEUE_FULL rather than a deep queue",
			"max-queue":             "20,000 messages queued node-wide",
			"max-queue-bytes":       "32 MiB of queued messages node-wide: QUEUE_FULL rather than a deep queue",
			"tick-interval":         "10 ms: request timeouts fire within 10 ms of their deadline",
			"loop-lag-budget":       "20 ms of event-loop lag counts as fully loaded for the zones",
			"slow-consumer-timeout": "5 s: a connection that stops reading is closed sooner",
			"tcp-delay": "not set: the default already keeps TCP_NODELAY on; a config file that " +
				"sets tcp-delay: true still wins",
		},
	}
}
