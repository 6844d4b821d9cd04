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

// Config holds a server's settings. The zero value of every field means "use the default"
// given in its comment; DefaultConfig returns a Config with every default filled in, and
// New applies the same defaults to zero fields. Durations are time.Duration; sizes are bytes.
//
// Field names map to config-file keys and `switchboard serve` flags in kebab case
// (MaxConnections is max-connections / --max-connections). Keep them stable.
type Config struct {
	// Listen is the client TCP address. Default ":7400". Tests use "127.0.0.1:0".
	Listen string
	// Admin is the admin HTTP address (metrics, health, pprof). Default "127.0.0.1:7401";
	// "off" disables it. Served by cmd/switchboard, not by Server itself.
	Admin string
	// NodeID is this node's id inside connection ids (1..65535). Default 1.
	NodeID uint16
	// ServerID is the node's name, sent in WELCOME. Default: the host name.
	ServerID string
	// Loops is the number of event loops. Default: GOMAXPROCS.
	Loops int
	// MaxConnections caps concurrent client connections. Default: as many as the process's
	// open-file limit allows (see limits.MaxConnections); a larger value is lowered to that.
	MaxConnections int
	// MaxFrame is the largest frame length field accepted after the handshake, in bytes.
	// Default 1 MiB (codec.DefaultMaxFrame); announced in WELCOME.
	MaxFrame int
	// Token is the shared secret a HELLO must carry. Default "" (no authentication).
	Token string
	// LogLevel is the log level: debug, info, warn or error. Default info. Not used by
	// Server itself (its logger comes from WithLogger); switchboard serve applies it and
	// re-reads it on SIGHUP.
	LogLevel string
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
	// MaxNamesPerConn caps the names one connection may register. Default 64.
	MaxNamesPerConn int
	// HandshakeTimeout is how long a new connection may take to send HELLO. Default 5s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection that sent nothing for this long. Clients ping at a
	// third of it (announced in WELCOME). Default 90s.
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
	// drops a peer that stops answering them). Default 0: off; the idle timeout and the
	// protocol's PINGs already find dead peers.
	TCPKeepAlive time.Duration
	// MaxQueue bounds the messages queued node-wide (cross-loop rings plus outbound
	// messages not yet taken by sockets); past it senders get QUEUE_FULL. Checked against
	// a sample refreshed every tick. Default 50,000.
	MaxQueue int
	// SlowConsumerTimeout closes a connection whose outbound data has not drained for this
	// long (ERROR SLOW_CONSUMER). Default 30s.
	SlowConsumerTimeout time.Duration
	// DrainPeriod is how long Drain takes to close every connection after GOAWAY
	// (switchboard serve drains on SIGTERM and SIGUSR2). Default 10s.
	DrainPeriod time.Duration
	// Peers is a comma-separated list of other nodes' client addresses, sent in GOAWAY and
	// in BUSY/SHUTTING_DOWN refusals as places to go. Default none.
	Peers string
	// LoopLagBudget is the event-loop lag counted as 100% utilisation in the zone
	// computation. Default 100ms.
	LoopLagBudget time.Duration

	// Config holds the rate limits, circuit breakers and zone thresholds (tiers 1-4);
	// its keys are flat (conn-msg-rate, accept-rate, zone-red, ...). See docs/LIMITS.md.
	limits.Config
}

// Defaults.
const (
	DefaultListen              = ":7400"
	DefaultAdmin               = "127.0.0.1:7401"
	DefaultMaxPending          = 1000
	DefaultMaxPendingBytes     = 4 << 20
	DefaultRingSize            = 8192
	DefaultFramesPerWake       = 512
	DefaultMaxNamesPerConn     = 64
	DefaultHandshakeTimeout    = 5 * time.Second
	DefaultIdleTimeout         = 90 * time.Second
	DefaultRequestTimeout      = 5 * time.Second
	DefaultMaxRequestTimeout   = 60 * time.Second
	DefaultTickInterval        = 50 * time.Millisecond
	DefaultBufferCap           = 64 << 10
	DefaultMaxQueue            = 50_000
	DefaultSlowConsumerTimeout = 30 * time.Second
	DefaultLoopLagBudget       = 100 * time.Millisecond
	DefaultDrainPeriod         = 10 * time.Second

	// handshakeMaxFrame bounds frames before WELCOME: a HELLO is at most 514 bytes, and an
	// unauthenticated peer must not make the server buffer a megabyte.
	handshakeMaxFrame = 1024
)

// DefaultConfig returns a Config with every default filled in, except MaxConnections,
// which depends on the open-file limit and is resolved by New.
func DefaultConfig() Config {
	var c Config
	c.EnsureDefaults()
	return c
}

// EnsureDefaults replaces zero fields with their defaults.
func (c *Config) EnsureDefaults() {
	setDefault(&c.Listen, DefaultListen)
	setDefault(&c.Admin, DefaultAdmin)
	setDefault(&c.LogLevel, "info")
	setDefault(&c.NodeID, 1)
	if c.ServerID == "" {
		c.ServerID, _ = os.Hostname()
		setDefault(&c.ServerID, "switchboard")
	}
	setDefault(&c.MaxFrame, codec.DefaultMaxFrame)
	setDefault(&c.MaxPending, DefaultMaxPending)
	setDefault(&c.MaxPendingBytes, DefaultMaxPendingBytes)
	setDefault(&c.RingSize, DefaultRingSize)
	setDefault(&c.FramesPerWake, DefaultFramesPerWake)
	setDefault(&c.MaxNamesPerConn, DefaultMaxNamesPerConn)
	setDefault(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&c.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.RequestTimeout, DefaultRequestTimeout)
	setDefault(&c.MaxRequestTimeout, DefaultMaxRequestTimeout)
	setDefault(&c.TickInterval, DefaultTickInterval)
	setDefault(&c.ReadBufferCap, DefaultBufferCap)
	setDefault(&c.WriteBufferCap, DefaultBufferCap)
	setDefault(&c.MaxQueue, DefaultMaxQueue)
	setDefault(&c.SlowConsumerTimeout, DefaultSlowConsumerTimeout)
	setDefault(&c.LoopLagBudget, DefaultLoopLagBudget)
	setDefault(&c.DrainPeriod, DefaultDrainPeriod)
	c.Config = c.Config.WithDefaults()
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// Validate reports every problem in c, each naming its field. Zero fields are fine (they
// mean the default); call it before or after EnsureDefaults.
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
	if c.Admin != "" && c.Admin != "off" {
		if _, _, err := net.SplitHostPort(c.Admin); err != nil {
			bad("admin", "%v", err)
		}
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		bad("log-level", "want debug, info, warn or error, got %q", c.LogLevel)
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
		{"max-queue", c.MaxQueue}, {"socket-recv-buffer", c.SocketRecvBuffer},
		{"socket-send-buffer", c.SocketSendBuffer},
	}
	for _, f := range nonNeg {
		if f.v < 0 {
			bad(f.name, "must not be negative, got %d", f.v)
		}
	}
	if c.Loops > 256 {
		bad("loops", "at most 256 event loops (connection ids hold 8 bits), got %d", c.Loops)
	}
	if c.MaxFrame != 0 && (c.MaxFrame < handshakeMaxFrame || c.MaxFrame > 64<<20) {
		bad("max-frame", "must be between %d and %d bytes, got %d", handshakeMaxFrame, 64<<20, c.MaxFrame)
	}
	if c.RingSize > 1<<20 {
		bad("ring-size", "at most %d, got %d", 1<<20, c.RingSize)
	}
	durs := []struct {
		name string
		v    time.Duration
	}{
		{"handshake-timeout", c.HandshakeTimeout}, {"idle-timeout", c.IdleTimeout},
		{"request-timeout", c.RequestTimeout}, {"max-request-timeout", c.MaxRequestTimeout},
		{"tick-interval", c.TickInterval}, {"slow-consumer-timeout", c.SlowConsumerTimeout},
		{"loop-lag-budget", c.LoopLagBudget}, {"drain-period", c.DrainPeriod},
		{"tcp-keep-alive", c.TCPKeepAlive},
	}
	for _, d := range durs {
		if d.v < 0 {
			bad(d.name, "must not be negative, got %v", d.v)
		}
	}
	if c.TickInterval != 0 && (c.TickInterval < time.Millisecond || c.TickInterval > time.Second) {
		bad("tick-interval", "must be between 1ms and 1s, got %v", c.TickInterval)
	}
	if c.RequestTimeout != 0 && c.MaxRequestTimeout != 0 && c.RequestTimeout > c.MaxRequestTimeout {
		bad("request-timeout", "%v exceeds max-request-timeout %v", c.RequestTimeout, c.MaxRequestTimeout)
	}
	if err := c.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
