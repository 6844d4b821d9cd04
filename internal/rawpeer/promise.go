package rawpeer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
)

// Tally is what one sender of SendAcked saw: the corrs answered OK, in order, and the
// refusals.
type Tally struct {
	Sent               int
	OK                 []uint32
	QueueFull, NoRoute int
	Err                error
}

// SendAcked sends acknowledged SENDs to name, window at a time in one write, until a
// window brings a refusal (or max SENDs were all accepted). Each payload (size bytes, at
// least 4) starts with its SEND's corr. It may run on a goroutine of its own: failures go
// into the Tally, not the test. Refusals other than QUEUE_FULL and NO_ROUTE are failures.
func (p *Peer) SendAcked(name string, size, window, max int) (tl Tally) {
	payload := make([]byte, size)
	corr := uint32(0)
	for tl.Sent < max {
		var batch []byte
		for range window {
			corr++
			binary.BigEndian.PutUint32(payload, corr)
			batch = codec.AppendSend(batch, codec.FlagAck, corr, name, payload)
		}
		_ = p.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := p.Conn.Write(batch); err != nil {
			tl.Err = fmt.Errorf("write: %w", err)
			return tl
		}
		refused := false
		for i := range window {
			want := corr - uint32(window) + uint32(i) + 1
			f, err := p.Read()
			if err != nil {
				tl.Err = fmt.Errorf("answer to SEND %d: %w", want, err)
				return tl
			}
			if f.Corr != want {
				tl.Err = fmt.Errorf("answer %v corr %d; want corr %d", f.Type, f.Corr, want)
				return tl
			}
			tl.Sent++
			switch f.Type {
			case codec.TypeOK:
				tl.OK = append(tl.OK, want)
				continue
			case codec.TypeError:
				e, err := codec.ParseError(f.Body)
				switch {
				case err != nil:
					tl.Err = err
					return tl
				case e.Code == codec.CodeQueueFull:
					tl.QueueFull++
				case e.Code == codec.CodeNoRoute:
					tl.NoRoute++
				default:
					tl.Err = fmt.Errorf("SEND %d answered %v (%q)", want, e.Code, e.Reason)
					return tl
				}
				refused = true
				continue
			}
			tl.Err = fmt.Errorf("SEND %d answered %v", want, f.Type)
			return tl
		}
		if refused {
			return tl
		}
	}
	return tl
}

// Received is what ReadToEOF read.
type Received struct {
	Corrs map[uint64][]uint32 // MESSAGE payload corrs (SendAcked's) by sender conn id, in order
	Pongs int
	Resps int // RESPONSEs
	Echos int // ECHO_REPLYs
	Last  codec.Frame
	End   error // what ended the stream: io.EOF for a clean close
}

// ReadToEOF reads whole frames from p until the stream ends.
func (p *Peer) ReadToEOF() Received {
	r := Received{Corrs: map[uint64][]uint32{}}
	for {
		f, err := p.Read()
		if err != nil {
			r.End = err
			return r
		}
		r.Last = f
		switch f.Type {
		case codec.TypeMessage:
			from, _, payload, err := codec.ParseMessage(f.Body)
			if err != nil || len(payload) < 4 {
				r.End = fmt.Errorf("bad MESSAGE (%d-byte payload): %v", len(payload), err)
				return r
			}
			r.Corrs[from] = append(r.Corrs[from], binary.BigEndian.Uint32(payload))
		case codec.TypePong:
			r.Pongs++
		case codec.TypeResponse:
			r.Resps++
		case codec.TypeEchoReply:
			r.Echos++
		}
	}
}

// StopReading shrinks p's socket receive buffer (16 KiB), so that what the server holds
// for it, rather than the kernel, fills quickly; the test then leaves p unread until
// ReadToEOF.
func (p *Peer) StopReading() {
	p.T.Helper()
	if err := p.Conn.(*net.TCPConn).SetReadBuffer(16 << 10); err != nil {
		p.T.Fatal(err)
	}
}

// FirstDiff is the first index at which a and b differ (the shorter length if one is a
// prefix of the other).
func FirstDiff(a, b []uint32) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// CheckClosedCleanly fails unless the receiver's stream ended with a whole ERROR
// SLOW_CONSUMER frame carrying the closing flag, followed by EOF (no reset, no cut frame).
func CheckClosedCleanly(t testing.TB, r Received) {
	t.Helper()
	if !errors.Is(r.End, io.EOF) || errors.Is(r.End, io.ErrUnexpectedEOF) {
		reset := errors.Is(r.End, syscall.ECONNRESET)
		t.Errorf("stream ended with %v (reset %v, cut frame %v); want a clean EOF after whole frames",
			r.End, reset, errors.Is(r.End, io.ErrUnexpectedEOF))
	}
	if r.Last.Type != codec.TypeError {
		t.Fatalf("last whole frame %v corr %d; want ERROR SLOW_CONSUMER", r.Last.Type, r.Last.Corr)
	}
	e, err := codec.ParseError(r.Last.Body)
	if err != nil || e.Code != codec.CodeSlowConsumer || e.Flags&codec.ErrFlagClosing == 0 {
		t.Fatalf("last frame ERROR %v flags %#x (%v); want SLOW_CONSUMER with the closing flag", e.Code, e.Flags, err)
	}
}
