package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/limits"
)

// Config holds a server's settings: only what the server itself reads (the binary's own
// settings, such as the admin address, live in the binary's config, which embeds this
// one). Durations are time.Duration; sizes are bytes.
//
// DefaultConfig returns a Config with every default filled in; a configuration loader
// starts from it, so that an explicit 0 survives. The zero value is usable too, by one
// rule: fields where 0 is not meaningful take the default (New calls EnsureDefaults);
// fields where 0 means off, none or auto say so in their comment and keep it. Validate
// applies no defaults: a 0 in a field where 0 is not meaningful is an error naming the
// field, so that a loader that started from DefaultConfig reports an explicit 0 instead
// of silently replacing it.
//
// Field names map to config-file keys and `switchboard serve` flags in kebab case
// (MaxConnections is max-connections / --max-connections). Keep them stable.
type Config struct {
	// Listen is the client TCP address. Default ":7400"; "" means the default. Tests use
	// "127.0.0.1:0".
	Listen string
	// NodeID is this node's id inside connection ids (1..65535). Default 1.
	NodeID uint16
	// ServerID is the node's name, sent in WELCOME. Default "": auto, the host name
	// (resolved by New).
	ServerID string
	// Loops is the number of event loops. Default 0: auto, GOMAXPROCS (resolved by New).
	Loops int
	// MaxConnections caps concurrent client connections. Default 0: auto, as many as the
	// process's open-file limit allows (see limits.MaxConnections; resolved by Start); a
	// larger value is lowered to that.
	MaxConnections int
	// MaxFrame is the largest frame length field accepted after the handshake, in bytes.
	// Default 1 MiB (codec.DefaultMaxFrame); announced in WELCOME.
	MaxFrame int
	// Token is the shared secret a HELLO must carry. Default "": no authentication (or
	// per-user credentials, given with WithCredentials; the two exclude each other).
	Token string
	// AuthFailuresPerIP caps the failed handshakes (wrong token, unknown user) one client
	// address may make per second (IPv6 per /64), burst as many; past it, its HELLOs are
	// refused UNAUTHORIZED with a retry-after and not checked at all. Default 10; 0 = off.
	AuthFailuresPerIP int
	// MaxHandshakes caps the connections admitted and not yet past HELLO; past it new
	// connections are refused BUSY at accept, so that peers that never authenticate cannot
	// crowd out those that do. Default 0: auto, a tenth of max-connections (at least 64,
	// or max-connections if that is less; resolved by Start).
	MaxHandshakes int
	// MaxPending caps the messages queued for one connection that its socket has not taken
	// yet. Past it the slow-consumer policy applies. Default 1000.
	MaxPending int
	// MaxPendingBytes caps the bytes queued for one connection likewise. Default 4 MiB.
	MaxPendingBytes int
	// RingSize is the number of slots in each event loop's inbound cross-loop ring; a full
	// ring answers senders with QUEUE_FULL. Rounded up to a power of two. Default 8192.
	RingSize int
	// FramesPerWake caps the frames handled in one read callback before the loop serves
	// other connections (fairness). Default 512.
	FramesPerWake int
	// RouteCredit is how many messages one connection may have on their way to other
	// event loops (routed, not yet queued for their targets) before its loop stops
	// reading its input until they are down to half: flow control, so that a sender's
	// window bounds what waits between loops (credit.go). Default 0 = off: it costs
	// connections that pipeline deeply (docs/BENCHMARKS.md, "Route credit"); the latency
	// profile sets 16.
	RouteCredit int
	// WriteCoalesce: after busy poll rounds, output under this many bytes that the
	// last round left for a connection waits one more round, to be written with what the
	// next round adds (loop.flushRound): fewer, larger writes at some latency. Default 0 = off
	// (every round's output is written at its end); the throughput profile sets 16 KiB.
	WriteCoalesce int
	// MaxNamesPerConn caps the names one connection may register. Default 64.
	MaxNamesPerConn int
	// HandshakeTimeout is how long a new connection may take to send HELLO and be
	// welcomed (a credentials check included). Default 2s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection that sent nothing for this long. Clients ping at a
	// third of it (announced in WELCOME). Default 90s; 0 = off: no idle timer, and WELCOME
	// announces ping interval 0 (the protocol's "no idle timeout").
	IdleTimeout time.Duration
	// RequestTimeout is used for a REQUEST whose timeout field is 0. Default 5s.
	RequestTimeout time.Duration
	// MaxRequestTimeout caps the timeout a REQUEST may ask for. Default 60s.
	MaxRequestTimeout time.Duration
	// TickInterval is the resolution of the per-loop timer wheel. Default 50ms.
	TickInterval time.Duration
	// ReadBufferCap is gnet's per-loop read buffer, bytes. Default 64 KiB.
	ReadBufferCap int
	// WriteBufferCap is gnet's per-connection outbound buffer chunk, bytes. Default 64 KiB.
	WriteBufferCap int
	// TCPDelay turns Nagle's algorithm back on (TCP_NODELAY off). Default false.
	TCPDelay bool
	// SocketRecvBuffer and SocketSendBuffer set SO_RCVBUF/SO_SNDBUF on client sockets, in
	// bytes. Default 0: the kernel's autotuning.
	SocketRecvBuffer int
	SocketSendBuffer int
	// TCPKeepAlive enables TCP keepalive probes after this much idle time (the kernel
	// drops a peer that stops answering them). Default 0 = off; the idle timeout and the
	// protocol's PINGs already find dead peers.
	TCPKeepAlive time.Duration
	// TCPDeferAccept sets TCP_DEFER_ACCEPT on the client listener (Linux): the kernel
	// completes a connection that has sent nothing without handing it to accept, until
	// its first data arrives or this long has passed (rounded up to the kernel's SYN-ACK
	// retransmission schedule: 1, 3, 7, 15, 31 s, ...). A client says HELLO first, so it
	// is accepted with its HELLO; a silent connection costs the node nothing (no
	// descriptor, no handshake slot, no accept) until then, and is accepted afterwards
	// like any other and given handshake-timeout. Up to the listen backlog of them wait
	// in the kernel; past that the kernel's SYN cookies accept the rest at once. A peer
	// that sends one byte is not deferred. Default 30s (as Apache httpd), which the kernel
	// makes 31 s; 0 = off (a listener passed to StartListener then keeps what it has).
	// See docs/LIMITS.md.
	TCPDeferAccept time.Duration
	// MaxQueue bounds the messages queued node-wide (cross-loop rings plus outbound
	// messages not yet taken by sockets); past it senders get QUEUE_FULL. Checked against
	// a sample refreshed every tick. Default 50,000.
	MaxQueue int
	// MaxQueueBytes bounds the bytes of those messages likewise: what the rings carry
	// between loops plus what gnet holds for connections and their sockets have not taken.
	// A count alone let 50,000 messages of 4 KiB (200 MiB) fill a 180 MiB node. Checked
	// against the same sample. Default 64 MiB.
	MaxQueueBytes int
	// SlowConsumerTimeout closes a connection whose output has waited this long without
	// its socket taking it (ERROR SLOW_CONSUMER). Default 30s.
	SlowConsumerTimeout time.Duration
	// Peers is a comma-separated list of other nodes' client addresses, sent in GOAWAY and
	// in BUSY/SHUTTING_DOWN refusals as places to go. Default "": none.
	Peers string
	// LoopLagBudget is the event-loop lag counted as 100% utilisation in the zone
	// computation. Default 100ms.
	LoopLagBudget time.Duration
	// ProxyProtocolFrom lists the proxies (comma-separated addresses or CIDR prefixes,
	// "10.0.0.5, 192.0.2.0/24, ::1") whose connections start with a PROXY protocol header
	// (v1 or v2), which they must send: its source address replaces the proxy's for per-IP
	// limits and logs. A PROXY header from any other address is refused. Default "": off.
	// See proxy.go.
	ProxyProtocolFrom string

	// Config holds the rate limits, circuit breakers and zone thresholds (tiers 1-4);
	// its keys are flat (conn-msg-rate, accept-rate, zone-red, ...); each field says what 0
	// means there. See docs/LIMITS.md.
	limits.Config
}

// Defaults.
const (
	DefaultListen              = ":7400"
	DefaultNodeID              = 1
	DefaultMaxPending          = 1000
	DefaultMaxPendingBytes     = 4 << 20
	DefaultRingSize            = 8192
	DefaultFramesPerWake       = 512
	DefaultMaxNamesPerConn     = 64
	DefaultHandshakeTimeout    = 2 * time.Second
	DefaultAuthFailuresPerIP   = 10
	DefaultIdleTimeout         = 90 * time.Second
	DefaultRequestTimeout      = 5 * time.Second
	DefaultMaxRequestTimeout   = 60 * time.Second
	DefaultTickInterval        = 50 * time.Millisecond
	DefaultBufferCap           = 64 << 10
	DefaultMaxQueue            = 50_000
	DefaultMaxQueueBytes       = 64 << 20
	DefaultSlowConsumerTimeout = 30 * time.Second
	DefaultLoopLagBudget       = 100 * time.Millisecond
	DefaultTCPDeferAccept      = 30 * time.Second

	// handshakeMaxFrame bounds frames before WELCOME: a HELLO is at most 514 bytes, and an
	// unauthenticated peer must not make the server buffer a megabyte.
	handshakeMaxFrame = 1024
)

// DefaultConfig returns a Config with every default filled in: the one place the
// defaults are written down. ServerID, Loops and MaxConnections stay auto ("" and 0):
// New and Start resolve them from the host name, GOMAXPROCS and the open-file limit.
func DefaultConfig() Config {
	return Config{
		Listen:              DefaultListen,
		NodeID:              DefaultNodeID,
		MaxFrame:            codec.DefaultMaxFrame,
		MaxPending:          DefaultMaxPending,
		MaxPendingBytes:     DefaultMaxPendingBytes,
		RingSize:            DefaultRingSize,
		FramesPerWake:       DefaultFramesPerWake,
		MaxNamesPerConn:     DefaultMaxNamesPerConn,
		HandshakeTimeout:    DefaultHandshakeTimeout,
		AuthFailuresPerIP:   DefaultAuthFailuresPerIP,
		IdleTimeout:         DefaultIdleTimeout,
		RequestTimeout:      DefaultRequestTimeout,
		MaxRequestTimeout:   DefaultMaxRequestTimeout,
		TickInterval:        DefaultTickInterval,
		ReadBufferCap:       DefaultBufferCap,
		WriteBufferCap:      DefaultBufferCap,
		MaxQueue:            DefaultMaxQueue,
		MaxQueueBytes:       DefaultMaxQueueBytes,
		SlowConsumerTimeout: DefaultSlowConsumerTimeout,
		LoopLagBudget:       DefaultLoopLagBudget,
		TCPDeferAccept:      DefaultTCPDeferAccept,
		Config:              limits.DefaultConfig(),
	}
}

func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "switchboard"
}

// EnsureDefaults replaces the zero fields where 0 is not meaningful with their
// DefaultConfig values, for callers that build a Config by hand (New calls it). It keeps
// every field where 0 means off, none or auto (resolving ServerID, which has no other
// use for ""): IdleTimeout, TCPKeepAlive, TCPDeferAccept, Loops, MaxConnections, MaxHandshakes, Token,
// AuthFailuresPerIP, WriteCoalesce, Peers, ProxyProtocolFrom, the socket buffers, the rate limits and
// bursts, MaxConnsPerIP, ZoneHysteresis and ZoneMinDwell. So in a zero-value Config the
// idle timeout is off and zones have no hysteresis; start from DefaultConfig for their
// defaults.
func (c *Config) EnsureDefaults() {
	d := DefaultConfig()
	setDefault(&c.Listen, d.Listen)
	setDefault(&c.NodeID, d.NodeID)
	setDefault(&c.ServerID, hostname())
	setDefault(&c.MaxFrame, d.MaxFrame)
	setDefault(&c.MaxPending, d.MaxPending)
	setDefault(&c.MaxPendingBytes, d.MaxPendingBytes)
	setDefault(&c.RingSize, d.RingSize)
	setDefault(&c.FramesPerWake, d.FramesPerWake)
	setDefault(&c.MaxNamesPerConn, d.MaxNamesPerConn)
	setDefault(&c.HandshakeTimeout, d.HandshakeTimeout)
	setDefault(&c.RequestTimeout, d.RequestTimeout)
	setDefault(&c.MaxRequestTimeout, d.MaxRequestTimeout)
	setDefault(&c.TickInterval, d.TickInterval)
	setDefault(&c.ReadBufferCap, d.ReadBufferCap)
	setDefault(&c.WriteBufferCap, d.WriteBufferCap)
	setDefault(&c.MaxQueue, d.MaxQueue)
	setDefault(&c.MaxQueueBytes, d.MaxQueueBytes)
	setDefault(&c.SlowConsumerTimeout, d.SlowConsumerTimeout)
	setDefault(&c.LoopLagBudget, d.LoopLagBudget)
	// limits.Config applies no defaults itself; these are its fields without a meaningful 0.
	l, dl := &c.Config, d.Config
	setDefault(&l.BreakerErrorRate, dl.BreakerErrorRate)
	setDefault(&l.BreakerWindow, dl.BreakerWindow)
	setDefault(&l.BreakerMinRequests, dl.BreakerMinRequests)
	setDefault(&l.BreakerOpenFor, dl.BreakerOpenFor)
	setDefault(&l.BreakerProbes, dl.BreakerProbes)
	setDefault(&l.TargetErrorRate, dl.TargetErrorRate)
	setDefault(&l.TargetMinFailures, dl.TargetMinFailures)
	setDefault(&l.MaxTargets, dl.MaxTargets)
	setDefault(&l.ZoneYellow, dl.ZoneYellow)
	setDefault(&l.ZoneOrange, dl.ZoneOrange)
	setDefault(&l.ZoneRed, dl.ZoneRed)
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// Validate reports every problem in c, each naming its field. It applies no defaults: a 0
// in a field where 0 is not meaningful is an error (call EnsureDefaults first to fill
// those of a hand-built Config, as New does).
func (c *Config) Validate() error {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("server: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			bad("listen", "%v", err)
		}
	}
	if c.NodeID == 0 {
		bad("node-id", "must be 1..65535, got 0")
	}
	if len(c.ServerID) > codec.MaxNameLen {
		bad("server-id", "longer than %d bytes", codec.MaxNameLen)
	}
	if len(c.Token) > codec.MaxNameLen {
		bad("token", "longer than %d bytes", codec.MaxNameLen)
	}
	nonNeg := []struct {
		name string
		v    int
	}{
		{"loops", c.Loops}, {"max-connections", c.MaxConnections}, {"max-pending", c.MaxPending},
		{"max-pending-bytes", c.MaxPendingBytes}, {"ring-size", c.RingSize},
		{"frames-per-wake", c.FramesPerWake}, {"max-names-per-conn", c.MaxNamesPerConn},
		{"read-buffer-cap", c.ReadBufferCap}, {"write-buffer-cap", c.WriteBufferCap},
		{"max-queue", c.MaxQueue}, {"max-queue-bytes", c.MaxQueueBytes},
		{"socket-recv-buffer", c.SocketRecvBuffer}, {"route-credit", c.RouteCredit},
		{"write-coalesce", c.WriteCoalesce},
		{"socket-send-buffer", c.SocketSendBuffer}, {"max-handshakes", c.MaxHandshakes},
		{"auth-failures-per-ip", c.AuthFailuresPerIP},
	}
	for _, f := range nonNeg {
		if f.v < 0 {
			bad(f.name, "must not be negative, got %d", f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"max-frame", c.MaxFrame}, {"max-pending", c.MaxPending},
		{"max-pending-bytes", c.MaxPendingBytes}, {"ring-size", c.RingSize},
		{"frames-per-wake", c.FramesPerWake}, {"max-names-per-conn", c.MaxNamesPerConn},
		{"read-buffer-cap", c.ReadBufferCap}, {"write-buffer-cap", c.WriteBufferCap},
		{"max-queue", c.MaxQueue}, {"max-queue-bytes", c.MaxQueueBytes},
	} {
		if f.v == 0 {
			bad(f.name, "must be positive, got 0")
		}
	}
	if c.Loops > 256 {
		bad("loops", "at most 256 event loops (connection ids hold 8 bits), got %d", c.Loops)
	}
	if c.MaxFrame > 0 && (c.MaxFrame < handshakeMaxFrame || c.MaxFrame > 64<<20) {
		bad("max-frame", "must be between %d and %d bytes, got %d", handshakeMaxFrame, 64<<20, c.MaxFrame)
	}
	if c.RingSize > 1<<20 {
		bad("ring-size", "at most %d, got %d", 1<<20, c.RingSize)
	}
	durs := []struct {
		name    string
		v       time.Duration
		zeroOff bool // 0 means off
	}{
		{"handshake-timeout", c.HandshakeTimeout, false}, {"idle-timeout", c.IdleTimeout, true},
		{"request-timeout", c.RequestTimeout, false}, {"max-request-timeout", c.MaxRequestTimeout, false},
		{"slow-consumer-timeout", c.SlowConsumerTimeout, false},
		{"loop-lag-budget", c.LoopLagBudget, false}, {"tcp-keep-alive", c.TCPKeepAlive, true},
		{"tcp-defer-accept", c.TCPDeferAccept, true},
	}
	for _, d := range durs {
		switch {
		case d.v < 0:
			bad(d.name, "must not be negative, got %v", d.v)
		case d.v == 0 && !d.zeroOff:
			bad(d.name, "must be positive, got 0")
		}
	}
	if c.TCPDeferAccept > maxDeferAccept {
		bad("tcp-defer-accept", "at most %v, got %v", maxDeferAccept, c.TCPDeferAccept)
	}
	if c.TickInterval < time.Millisecond || c.TickInterval > time.Second {
		bad("tick-interval", "must be between 1ms and 1s, got %v", c.TickInterval)
	}
	if c.RequestTimeout > c.MaxRequestTimeout && c.MaxRequestTimeout > 0 {
		bad("request-timeout", "%v exceeds max-request-timeout %v", c.RequestTimeout, c.MaxRequestTimeout)
	}
	if _, err := parseProxyFrom(c.ProxyProtocolFrom); err != nil {
		bad("proxy-protocol-from", "%v", err)
	}
	if err := c.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
