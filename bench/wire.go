package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/switchboard/switchboard/codec"
)

// maxInbound bounds frames read from the server: PROTOCOL.md allows max_frame + 266;
// anything beyond max_frame + 1024 is treated as garbage.
const maxInbound = codec.DefaultMaxFrame + 1024

// errorCode returns the code of an ERROR body without allocating.
func errorCode(body []byte) codec.ErrorCode {
	if len(body) < 2 {
		return 0
	}
	return codec.ErrorCode(binary.BigEndian.Uint16(body))
}

// errorRetryAfter is an ERROR body's retry-after (0: no advice).
func errorRetryAfter(body []byte) time.Duration {
	if len(body) < 6 {
		return 0
	}
	return time.Duration(binary.BigEndian.Uint32(body[2:])) * time.Millisecond
}

// errorClosing reports whether an ERROR body carries the CLOSING flag.
func errorClosing(body []byte) bool {
	return len(body) >= 7 && codec.ErrorFlags(body[6])&codec.ErrFlagClosing != 0
}

// dialer opens connections from one source address. It is safe for concurrent use.
type dialer struct {
	d net.Dialer // immutable after newDialer
}

// newDialer returns a dialer from source ("" for the system's choice) with a timeout per
// dial. A source address is bound with IP_BIND_ADDRESS_NO_PORT (see bindNoPort), so the
// local port is picked at connect time for the destination.
func newDialer(source string, timeout time.Duration) (*dialer, error) {
	dl := &dialer{d: net.Dialer{Timeout: timeout}}
	if source != "" {
		ip := net.ParseIP(source)
		if ip == nil {
			return nil, fmt.Errorf("bench: bad source address %q", source)
		}
		dl.d.LocalAddr = &net.TCPAddr{IP: ip}
		dl.d.Control = bindNoPort
	}
	return dl, nil
}

func (dl *dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	nc, err := dl.d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return nc, nil
}

// errRefused is returned by handshake when the server answered HELLO with an ERROR.
var errRefused = errors.New("bench: connection refused by the server")

// handshake sends HELLO and waits for WELCOME. A refusal returns errRefused with the
// ERROR's code; anything else (EOF, timeout, garbage) returns code 0 and the error.
func handshake(nc net.Conn, fr *codec.Reader, name, token string, timeout time.Duration) (codec.Welcome, codec.ErrorCode, error) {
	_ = nc.SetDeadline(time.Now().Add(timeout))
	defer func() { _ = nc.SetDeadline(time.Time{}) }()
	if _, err := nc.Write(codec.AppendHello(nil, 1, codec.Version, name, token)); err != nil {
		return codec.Welcome{}, 0, err
	}
	for {
		f, err := fr.Next()
		if err != nil {
			return codec.Welcome{}, 0, err
		}
		switch f.Type {
		case codec.TypeWelcome:
			w, err := codec.ParseWelcome(f.Body)
			w.ServerID = nil // aliases the buffer
			return w, 0, err
		case codec.TypeError:
			return codec.Welcome{}, errorCode(f.Body), errRefused
		case codec.TypeGoAway:
			return codec.Welcome{}, codec.CodeShuttingDown, errRefused
		}
	}
}
