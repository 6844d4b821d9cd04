// Package rawpeer is a test helper: a protocol peer on a plain net.Conn that sends and reads
// single frames, for tests that need to misbehave in ways a real client would not.
//
// # Concurrency
//
// A Peer is used by one goroutine at a time.
package rawpeer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
)

// maxFrame bounds the frames a Peer accepts: far above any server limit, so that tests
// see what the server sent, yet bounded.
const maxFrame = 64 << 20

// Peer is one raw connection.
type Peer struct {
	T    testing.TB
	Conn net.Conn
	fr   *codec.Reader
	// ConnID is set by Hello.
	ConnID uint64
}

// Dial connects to addr; the test fails if it cannot.
func Dial(t testing.TB, addr string) *Peer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &Peer{T: t, Conn: c, fr: codec.NewReader(c, maxFrame, 0)}
}

// DialSmallWindow is Dial with the socket's receive buffer set to 16 KiB before it
// connects, so that the window it offers the server from the first byte is small: what
// the server sends beyond it waits in the server's kernel until the test reads.
// (StopReading shrinks the buffer after the connect, when a larger window may have been
// offered already. A buffer of the kernel's minimum, ~4 KiB, made the server's kernel
// probe the window at backed-off intervals: reading 64 KiB took 26 s.)
func DialSmallWindow(t testing.TB, addr string) *Peer {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
		}); err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &Peer{T: t, Conn: c, fr: codec.NewReader(c, maxFrame, 0)}
}

// Hello performs the handshake with the given client name and token and fails the test
// unless WELCOME comes back.
func (p *Peer) Hello(name, token string) codec.Welcome {
	p.T.Helper()
	p.Write(codec.AppendHello(nil, 1, codec.Version, name, token))
	f := p.Expect(codec.TypeWelcome)
	w, err := codec.ParseWelcome(f.Body)
	if err != nil {
		p.T.Fatalf("bad WELCOME: %v", err)
	}
	p.ConnID = w.ConnID
	return w
}

// Write writes raw bytes.
func (p *Peer) Write(b []byte) {
	p.T.Helper()
	_ = p.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.Conn.Write(b); err != nil {
		p.T.Fatalf("write: %v", err)
	}
}

// Read reads one frame within 10 s (generous: a loaded CI machine is slow, and a test
// that waits for a frame must not fail because it came late). The body is a copy.
func (p *Peer) Read() (codec.Frame, error) {
	return p.ReadTimeout(10 * time.Second)
}

// ReadTimeout reads one frame within d. The body is a copy. After a timeout the peer can
// read again: a frame cut by the deadline is completed by the next read.
func (p *Peer) ReadTimeout(d time.Duration) (codec.Frame, error) {
	_ = p.Conn.SetReadDeadline(time.Now().Add(d))
	f, err := p.fr.Next()
	if err != nil {
		return codec.Frame{}, err
	}
	f.Body = bytes.Clone(f.Body) // callers keep frames; the Reader's buffer is reused
	return f, nil
}

// Expect reads one frame and fails the test unless it has type t. An unexpected ERROR is
// shown decoded.
func (p *Peer) Expect(t codec.Type) codec.Frame {
	p.T.Helper()
	f, err := p.Read()
	if err != nil {
		p.T.Fatalf("reading %v: %v", t, err)
	}
	if f.Type != t {
		p.T.Fatalf("got %v (%s); want %v", f.Type, describe(f), t)
	}
	return f
}

// ExpectError reads one frame and fails the test unless it is an ERROR with code.
func (p *Peer) ExpectError(code codec.ErrorCode) (codec.Frame, codec.ErrorBody) {
	p.T.Helper()
	f := p.Expect(codec.TypeError)
	e, err := codec.ParseError(f.Body)
	if err != nil {
		p.T.Fatalf("bad ERROR body: %v", err)
	}
	if e.Code != code {
		p.T.Fatalf("got ERROR %v (%q); want %v", e.Code, e.Reason, code)
	}
	return f, e
}

// ExpectClosed fails the test unless the server closes the connection within 10 s (any
// frames before the close are skipped).
func (p *Peer) ExpectClosed() {
	p.T.Helper()
	for {
		_, err := p.Read()
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			return
		}
		p.T.Fatalf("want the server to close; got %v", err)
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

func describe(f codec.Frame) string {
	if f.Type == codec.TypeError {
		if e, err := codec.ParseError(f.Body); err == nil {
			return fmt.Sprintf("%v: %s", e.Code, e.Reason)
		}
	}
	return fmt.Sprintf("corr %d, %d body bytes", f.Corr, len(f.Body))
}
