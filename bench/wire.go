package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/switchboard/switchboard/codec"
)

// maxInbound bounds frames read from the server: PROTOCOL.md allows max_frame + 266;
// anything beyond max_frame + 1024 is treated as garbage.
const maxInbound = codec.DefaultMaxFrame + 1024

// frameReader cuts frames out of a buffered connection without allocating: Next returns a
// frame that aliases the bufio buffer, valid until the following Next.
type frameReader struct {
	br      *bufio.Reader
	pending int    // bytes of the last frame still to Discard
	big     []byte // for a frame larger than the bufio buffer (rare)
}

func newFrameReader(r io.Reader, size int) *frameReader {
	return &frameReader{br: bufio.NewReaderSize(r, size)}
}

// Next returns the next frame.
func (fr *frameReader) Next() (codec.Frame, error) {
	if fr.pending > 0 {
		_, _ = fr.br.Discard(fr.pending)
		fr.pending = 0
	}
	hdr, err := fr.br.Peek(codec.PrefixLen)
	if err != nil {
		return codec.Frame{}, err
	}
	n, err := codec.FrameLen(hdr, maxInbound)
	if err != nil {
		return codec.Frame{}, err
	}
	var b []byte
	if n <= fr.br.Size() {
		if b, err = fr.br.Peek(n); err != nil {
			return codec.Frame{}, err
		}
		fr.pending = n
	} else {
		if cap(fr.big) < n {
			fr.big = make([]byte, n)
		}
		b = fr.big[:n]
		if _, err = io.ReadFull(fr.br, b); err != nil {
			return codec.Frame{}, err
		}
	}
	f, _, err := codec.Decode(b, maxInbound)
	return f, err
}

// Complete reports whether another whole frame is already buffered, so that reading it
// will not block. Senders flush their batch before a read that would block.
func (fr *frameReader) Complete() bool {
	avail := fr.br.Buffered() - fr.pending
	if avail < codec.PrefixLen {
		return false
	}
	hdr, err := fr.br.Peek(fr.pending + codec.PrefixLen)
	if err != nil {
		return false
	}
	n := int(binary.BigEndian.Uint32(hdr[fr.pending:])) + codec.PrefixLen
	return avail >= n
}

// errorCode returns the code of an ERROR body without allocating.
func errorCode(body []byte) codec.ErrorCode {
	if len(body) < 2 {
		return 0
	}
	return codec.ErrorCode(binary.BigEndian.Uint16(body))
}

// errorClosing reports whether an ERROR body carries the CLOSING flag.
func errorClosing(body []byte) bool {
	return len(body) >= 7 && codec.ErrorFlags(body[6])&codec.ErrFlagClosing != 0
}

// dialer opens connections from one source address.
type dialer struct {
	d net.Dialer
}

func newDialer(source string, timeout time.Duration) (*dialer, error) {
	dl := &dialer{d: net.Dialer{Timeout: timeout}}
	if source != "" {
		ip := net.ParseIP(source)
		if ip == nil {
			return nil, fmt.Errorf("bench: bad source address %q", source)
		}
		dl.d.LocalAddr = &net.TCPAddr{IP: ip}
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
func handshake(nc net.Conn, fr *frameReader, name, token string, timeout time.Duration) (codec.Welcome, codec.ErrorCode, error) {
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
