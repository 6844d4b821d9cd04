package server

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

// Tests of what docs/PROTOCOL.md says about the order of checks and the corner cases a
// client author asked about (sections 4.7, 4.13, 5 and 9).

// TestPreHelloCheckOrder: before WELCOME the length prefix is checked first (against
// 1024), then the type (anything but HELLO is HELLO_REQUIRED, unknown types included),
// then the HELLO body, its version, its token; garbage gets what its first 4 bytes say.
func TestPreHelloCheckOrder(t *testing.T) {
	s := startServer(t, Config{Token: "sesame"})
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	tests := []struct {
		name string
		send []byte
		code codec.ErrorCode
	}{
		{"unknown-type-before-hello", codec.AppendFrame(nil, 0x42, 0, 1, nil), codec.CodeHelloRequired},
		{"server-type-before-hello", codec.AppendFrame(nil, codec.TypeWelcome, 0, 1, nil), codec.CodeHelloRequired},
		{"length-before-type", append(u32(2000), 0x42), codec.CodeFrameTooLarge},
		{"hello-over-1024", append(u32(1025), byte(codec.TypeHello)), codec.CodeFrameTooLarge},
		{"length-below-6-before-type", append(u32(5), 0x42, 0, 0, 0, 0), codec.CodeBadFrame},
		{"body-before-version", codec.AppendFrame(nil, codec.TypeHello, 0, 1, []byte{0, 99}), codec.CodeBadFrame},
		{"version-before-token", codec.AppendHello(nil, 1, 99, "x", "wrong"), codec.CodeUnsupportedVersion},
		{"token", codec.AppendHello(nil, 1, codec.Version, "x", "wrong"), codec.CodeUnauthorized},
		{"garbage-http", []byte("GET / HTTP/1.1\r\n\r\n"), codec.CodeFrameTooLarge}, // "GET " = 1195725856
		{"garbage-small-length", []byte("\x00\x00\x00\x02zz"), codec.CodeBadFrame},
		{"garbage-whole-frame", []byte("\x00\x00\x00\x08\xee\x01zzzzzz"), codec.CodeHelloRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := rawpeer.Dial(t, s.Addr().String())
			p.Write(tt.send)
			if _, e := p.ExpectError(tt.code); e.Flags&codec.ErrFlagClosing == 0 {
				t.Errorf("ERROR %v without the closing flag", e.Code)
			}
			p.ExpectClosed()
		})
	}
}

// expectNoMoreFrames reads until the server closes and fails on any frame but GOAWAY.
func expectNoMoreFrames(t *testing.T, p *rawpeer.Peer) {
	t.Helper()
	for {
		f, err := p.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("want the server to close; got %v", err)
		}
		if f.Type != codec.TypeGoAway {
			t.Fatalf("got %v (corr %d) before the close; want nothing but GOAWAY", f.Type, f.Corr)
		}
	}
}

// TestDrainClosesWithoutError: a drain sends GOAWAY, then closes without an ERROR; a
// REQUEST sent after the GOAWAY is still handled, and if the connection is closed before
// its outcome is known, the requester gets no outcome at all.
func TestDrainClosesWithoutError(t *testing.T) {
	s := startServer(t, Config{})
	registered(t, s, "mute") // never replies
	a := connect(t, s, "a")
	done := make(chan error, 1)
	go func() { done <- s.Drain(context.Background(), 300*time.Millisecond) }()
	a.Expect(codec.TypeGoAway)
	a.Write(codec.AppendRequest(nil, 7, "mute", 60000, nil)) // after GOAWAY
	a.Write(codec.AppendFrame(nil, codec.TypePing, 0, 8, nil))
	a.Expect(codec.TypePong) // handled: the connection is still served
	expectNoMoreFrames(t, a) // no ERROR at the close, no outcome for corr 7
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestDuplicateCorrNotDetected: the server does not check that a REQUEST's corr is unused;
// two outstanding REQUESTs with the same corr are both forwarded and both answered with
// that corr, so the client cannot tell their outcomes apart.
func TestDuplicateCorrNotDetected(t *testing.T) {
	s := startServer(t, Config{})
	svc := registered(t, s, "svc")
	a := connect(t, s, "a")
	a.Write(codec.AppendRequest(nil, 5, "svc", 5000, []byte("one")))
	a.Write(codec.AppendRequest(nil, 5, "svc", 5000, []byte("two")))
	respondOnce(t, svc)
	respondOnce(t, svc)
	for range 2 {
		if f := a.Expect(codec.TypeResponse); f.Corr != 5 {
			t.Fatalf("RESPONSE corr %d; want 5", f.Corr)
		}
	}
}
