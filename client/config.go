package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/switchboard/switchboard/codec"
)

// Config configures a Client. The zero value is usable: every zero field means its
// default. Dial copies the Config; it is not read after Dial returns.
type Config struct {
	// Name is the client name sent in HELLO; peers see it as the sender of this client's
	// messages. At most 255 bytes. Default: empty.
	Name string
	// Token is the shared secret sent in HELLO. At most 255 bytes. Default: empty.
	Token string

	// DialTimeout bounds the TCP connect to one address, and the TLS handshake when TLS
	// is set. Default: 5s.
	DialTimeout time.Duration
	// TLS, when set, makes every connection TLS: the client handshakes after the TCP
	// connect, then speaks the protocol inside TLS, unchanged. switchboard itself speaks
	// plain TCP; TLS is terminated by a proxy in front of it (deploy/haproxy, see
	// docs/SECURITY.md). The Config is cloned per connection and not modified; an empty
	// ServerName becomes the host of the address dialed. Default: nil, plain TCP.
	TLS *tls.Config
	// Dialer makes the TCP connections, for a local address (LocalAddr), socket options
	// (Control) or keepalive settings; its Timeout and Deadline are overridden by
	// DialTimeout. It is not modified. Default: nil, a zero net.Dialer.
	Dialer *net.Dialer
	// HandshakeTimeout bounds HELLO → WELCOME on one connection. Default: 5s.
	HandshakeTimeout time.Duration
	// RequestTimeout is sent as the REQUEST timeout (in milliseconds) and bounds every call
	// whose context has no earlier deadline, including the time spent waiting for a
	// connection while reconnecting. A shorter context deadline shortens it. Default: 5s.
	RequestTimeout time.Duration

	// ReconnectMin and ReconnectMax bound the wait before each reconnect attempt: attempt n
	// waits a uniformly random time in [ReconnectMin, min(ReconnectMax, ReconnectMin·2^(n+1))]
	// ("full jitter"), or longer when the server asked for it. Defaults: 100ms and 5s.
	ReconnectMin, ReconnectMax time.Duration
	// NoReconnect makes the client close itself (state Closed) when its connection is lost
	// instead of reconnecting. Default: false: it reconnects, unless the server closed the
	// connection with an ERROR without RECONNECT.
	NoReconnect bool

	// MaxFrame is the largest length field accepted from the server; a larger frame is a
	// protocol violation and the connection is dropped (and re-established). Default (0):
	// the max_frame each server announces in WELCOME, which bounds every frame it sends
	// (PROTOCOL.md, section 2), and codec.DefaultMaxFrame (1 MiB) for the WELCOME itself.
	// Frames sent to the server are limited by the maximum it announces in WELCOME.
	MaxFrame int

	// OnMessage receives each MESSAGE. It runs on the reader goroutine, in order; it must
	// not block for long. Default: messages are dropped.
	OnMessage func(m Message)
	// OnRequest receives each INCOMING request. It runs on the reader goroutine, in order;
	// it must not block for long. r.Reply may be called later from any goroutine. Default:
	// requests are dropped (their senders get TIMEOUT).
	OnRequest func(r *Request)
	// OnStateChange is told about connection state changes; see State. It runs on the
	// supervisor goroutine, in order. Default: none.
	OnStateChange func(s State)

	// Logger receives connection events. Default: discard.
	Logger *slog.Logger
}

// Defaults for the zero fields of Config.
const (
	DefaultDialTimeout      = 5 * time.Second
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultRequestTimeout   = 5 * time.Second
	DefaultReconnectMin     = 100 * time.Millisecond
	DefaultReconnectMax     = 5 * time.Second
)

// DefaultConfig returns a Config with every default filled in explicitly.
func DefaultConfig() Config {
	var c Config
	c.EnsureDefaults()
	return c
}

// EnsureDefaults replaces every zero field of c with its default. Negative values are left
// for Validate to report.
func (c *Config) EnsureDefaults() {
	setDur := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setDur(&c.DialTimeout, DefaultDialTimeout)
	setDur(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	setDur(&c.RequestTimeout, DefaultRequestTimeout)
	setDur(&c.ReconnectMin, DefaultReconnectMin)
	setDur(&c.ReconnectMax, DefaultReconnectMax)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem in c, joined with errors.Join, naming the field. Zero
// fields are valid (they mean the default); Validate does not modify c.
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"DialTimeout", c.DialTimeout},
		{"HandshakeTimeout", c.HandshakeTimeout},
		{"RequestTimeout", c.RequestTimeout},
		{"ReconnectMin", c.ReconnectMin},
		{"ReconnectMax", c.ReconnectMax},
	} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("client: Config.%s is negative (%v)", f.name, f.d))
		}
	}
	if c.RequestTimeout > 0 && c.RequestTimeout/time.Millisecond > 1<<32-1 {
		errs = append(errs, fmt.Errorf("client: Config.RequestTimeout %v does not fit the protocol's u32 milliseconds", c.RequestTimeout))
	}
	if c.ReconnectMin > 0 && c.ReconnectMax > 0 && c.ReconnectMin > c.ReconnectMax {
		errs = append(errs, fmt.Errorf("client: Config.ReconnectMin (%v) is above ReconnectMax (%v)", c.ReconnectMin, c.ReconnectMax))
	}
	if c.MaxFrame != 0 && c.MaxFrame < codec.MinLen {
		errs = append(errs, fmt.Errorf("client: Config.MaxFrame %d is below the frame header size %d", c.MaxFrame, codec.MinLen))
	}
	if len(c.Name) > codec.MaxNameLen {
		errs = append(errs, fmt.Errorf("client: Config.Name is %d bytes, the limit is %d", len(c.Name), codec.MaxNameLen))
	}
	if len(c.Token) > 255 {
		errs = append(errs, fmt.Errorf("client: Config.Token is %d bytes, the limit is 255", len(c.Token)))
	}
	return errors.Join(errs...)
}
