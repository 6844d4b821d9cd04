package tuning

import (
	"reflect"
	"time"

	"github.com/switchboard/switchboard/limits"
	"github.com/switchboard/switchboard/server"
)

// Byte sizes.
const (
	KiB = 1 << 10
	MiB = 1 << 20
)

// Default is the profile applied when none is named.
const Default = "balanced"

// Profile is a named set of settings for one kind of node: Go runtime settings and the
// server.Config values they go with. It is plain data; Profiles returns fresh copies, so
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
	// Server holds the server settings the profile sets: its non-zero fields. Zero fields
	// are not set by the profile and keep their defaults (a zero means "default" in
	// server.Config too, so a profile cannot and need not set a field to zero).
	Server server.Config
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

// Apply copies the server settings the profile sets (the non-zero fields of p.Server)
// into cfg and leaves every other field of cfg alone. internal/config applies a profile
// this way before the config file, the environment and flags, which override it field
// by field. Apply does not touch the Go runtime: see ApplyRuntime.
func (p Profile) Apply(cfg *server.Config) {
	copyNonZero(reflect.ValueOf(cfg).Elem(), reflect.ValueOf(p.Server))
}

// copyNonZero sets each non-zero leaf field of src in dst; embedded and nested structs
// (limits.Config) are walked, time.Duration is a leaf.
func copyNonZero(dst, src reflect.Value) {
	for i := range src.NumField() {
		if !src.Type().Field(i).IsExported() {
			continue
		}
		s, d := src.Field(i), dst.Field(i)
		if s.Kind() == reflect.Struct {
			copyNonZero(d, s)
			continue
		}
		if !s.IsZero() {
			d.Set(s)
		}
	}
}

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
		Server: server.Config{
			ReadBufferCap:    16 * KiB,
			WriteBufferCap:   4 * KiB,
			MaxPending:       256,
			MaxPendingBytes:  256 * KiB,
			RingSize:         4096,
			MaxQueue:         20_000,
			MaxNamesPerConn:  16,
			HandshakeTimeout: 3 * time.Second,
			IdleTimeout:      120 * time.Second,
			Config: limits.Config{
				AcceptRate: 2000,
			},
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
			"max-names-per-conn": "16 names per connection keep the registry small at 100K connections",
			"handshake-timeout": "3 s: half-open and silent connections are the cheapest way to " +
				"fill a node built for 100K connections",
			"idle-timeout": "120 s: clients ping every 40 s, so 100K idle connections send about " +
				"2,500 pings/s instead of 3,300 at the 90 s default",
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
		Server: server.Config{
			ReadBufferCap:   256 * KiB,
			WriteBufferCap:  256 * KiB,
			FramesPerWake:   4096,
			MaxPending:      4000,
			MaxPendingBytes: 16 * MiB,
			RingSize:        32_768,
			MaxQueue:        200_000,
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
		Server: server.Config{
			FramesPerWake:       32,
			MaxPending:          200,
			MaxPendingBytes:     1 * MiB,
			RingSize:            4096,
			MaxQueue:            20_000,
			TickInterval:        10 * time.Millisecond,
			LoopLagBudget:       20 * time.Millisecond,
			SlowConsumerTimeout: 5 * time.Second,
		},
		Why: map[string]string{
			"frames-per-wake": "32 frames per read callback: a pipelining connection cannot hold " +
				"its loop for long",
			"max-pending":           "200 queued messages per connection: past that, queueing is delay",
			"max-pending-bytes":     "1 MiB per connection",
			"ring-size":             "4,096 cross-loop slots per loop: QUEUE_FULL rather than a deep queue",
			"max-queue":             "20,000 messages queued node-wide",
			"tick-interval":         "10 ms: request timeouts fire within 10 ms of their deadline",
			"loop-lag-budget":       "20 ms of event-loop lag counts as fully loaded for the zones",
			"slow-consumer-timeout": "5 s: a connection that stops reading is closed sooner",
			"tcp-delay": "not set: the default already keeps TCP_NODELAY on; a config file that " +
				"sets tcp-delay: true still wins",
		},
	}
}
