package server

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
	"github.com/switchboard/switchboard/shard"
)

// laterDir is a directory that decides every claim later, when the test says so, as a
// cluster-wide directory does after asking its peers. Owned names live in a Registry.
type laterDir struct {
	*shard.Registry
	mu      sync.Mutex
	pending []laterClaim // guarded by mu
}

type laterClaim struct {
	name string
	id   shard.ConnID
	done shard.ClaimFunc
}

func (d *laterDir) Claim(name string, id shard.ConnID, done shard.ClaimFunc) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending = append(d.pending, laterClaim{name, id, done})
	return shard.ErrPending
}

func (d *laterDir) claims() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}

// decide waits for the oldest pending claim, decides it (taken: NAME_TAKEN, otherwise
// the name is registered) and reports the outcome from another goroutine.
func (d *laterDir) decide(t testing.TB, name string, taken bool) shard.ConnID {
	t.Helper()
	if taken {
		return d.fail(t, name, shard.ErrNameTaken)
	}
	return d.fail(t, name, nil)
}

// fail is decide with the outcome err (nil: the name is registered).
func (d *laterDir) fail(t testing.TB, name string, err error) shard.ConnID {
	t.Helper()
	waitFor(t, "a claim", func() bool { return d.claims() > 0 })
	d.mu.Lock()
	c := d.pending[0]
	d.pending = d.pending[1:]
	d.mu.Unlock()
	if c.name != name {
		t.Fatalf("claim of %q; want %q", c.name, name)
	}
	if err == nil {
		if rerr := d.Register(c.name, c.id); rerr != nil {
			t.Fatal(rerr)
		}
	}
	go c.done(c.name, c.id, err)
	return c.id
}

// TestRegisterDecidedLater: while a claim is pending the loop serves the connection's
// other frames, the name is not owned yet (UNREGISTER: NOT_OWNER), a repeated REGISTER
// waits for the same outcome, and when the directory decides, every waiting REGISTER gets
// its OK and the name routes.
func TestRegisterDecidedLater(t *testing.T) {
	d := &laterDir{Registry: shard.NewRegistry()}
	s := startServer(t, Config{}, WithDirectory(d))
	p := rawpeer.Dial(t, s.Addr().String())
	p.Hello("svc", "")
	p.Write(codec.AppendName(nil, codec.TypeRegister, 1, "svc"))
	p.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 2, []byte("meanwhile")))
	if f := p.Expect(codec.TypeEchoReply); f.Corr != 2 {
		t.Fatalf("ECHO_REPLY corr %d; want 2 (the REGISTER is still pending)", f.Corr)
	}
	p.Write(codec.AppendName(nil, codec.TypeUnregister, 3, "svc"))
	if f, e := p.ExpectError(codec.CodeNotOwner); f.Corr != 3 || e.Reason != "registration of this name is still pending" {
		t.Fatalf("UNREGISTER of a pending name: corr %d %q", f.Corr, e.Reason)
	}
	p.Write(codec.AppendName(nil, codec.TypeRegister, 4, "svc"))
	pingBarrier(t, p, 5) // the repeated REGISTER was handled
	if n := d.claims(); n != 1 {
		t.Fatalf("%d claims asked of the directory; want 1 (the second REGISTER waits for the first)", n)
	}
	d.decide(t, "svc", false)
	for _, corr := range []uint32{1, 4} {
		if f := p.Expect(codec.TypeOK); f.Corr != corr {
			t.Fatalf("OK corr %d; want %d", f.Corr, corr)
		}
	}
	q := rawpeer.Dial(t, s.Addr().String())
	q.Hello("q", "")
	q.Write(codec.AppendSend(nil, codec.FlagAck, 6, "svc", []byte("hi")))
	q.Expect(codec.TypeOK)
	if f := p.Expect(codec.TypeMessage); string(f.Body[len(f.Body)-2:]) != "hi" {
		t.Fatalf("MESSAGE %x", f.Body)
	}
	// Owned now: UNREGISTER works and the directory lets go.
	p.Write(codec.AppendName(nil, codec.TypeUnregister, 7, "svc"))
	p.Expect(codec.TypeOK)
	if _, ok := d.Lookup([]byte("svc")); ok {
		t.Fatal("the directory still has svc after UNREGISTER")
	}
}

func TestRegisterDecidedLaterTaken(t *testing.T) {
	d := &laterDir{Registry: shard.NewRegistry()}
	s := startServer(t, Config{}, WithDirectory(d))
	p := rawpeer.Dial(t, s.Addr().String())
	p.Hello("p", "")
	p.Write(codec.AppendName(nil, codec.TypeRegister, 1, "busy"))
	d.decide(t, "busy", true)
	if f, _ := p.ExpectError(codec.CodeNameTaken); f.Corr != 1 {
		t.Fatalf("NAME_TAKEN corr %d; want 1", f.Corr)
	}
	// The name is free to try again, and the refused claim no longer counts.
	p.Write(codec.AppendName(nil, codec.TypeRegister, 2, "busy"))
	d.decide(t, "busy", false)
	if f := p.Expect(codec.TypeOK); f.Corr != 2 {
		t.Fatalf("OK corr %d; want 2", f.Corr)
	}
}

// TestRegisterDecidedAfterLeaving: a claim that succeeds after its connection left is
// given back to the directory, so no name stays owned by a connection that is gone.
func TestRegisterDecidedAfterLeaving(t *testing.T) {
	d := &laterDir{Registry: shard.NewRegistry()}
	s := startServer(t, Config{}, WithDirectory(d))
	p := rawpeer.Dial(t, s.Addr().String())
	p.Hello("gone", "")
	p.Write(codec.AppendName(nil, codec.TypeRegister, 1, "gone"))
	waitFor(t, "the claim", func() bool { return d.claims() == 1 })
	_ = p.Conn.Close()
	waitFor(t, "the close", func() bool { return s.Stats().Connections == 0 })
	d.decide(t, "gone", false)
	waitFor(t, "the name given back", func() bool { _, ok := d.Lookup([]byte("gone")); return !ok })
}

// notReadyDir is a directory that cannot answer: its claims are refused as busy and it
// reports itself not ready.
type notReadyDir struct{ *shard.Registry }

func (notReadyDir) Claim(string, shard.ConnID, shard.ClaimFunc) error { return shard.ErrBusy }
func (notReadyDir) Ready() (bool, string)                             { return false, "arbiter unreachable" }

// TestDirectoryNotReady: a directory that cannot answer makes the node not ready (so
// /readyz says 503 with its reason), and its busy refusal reaches the client as BUSY.
func TestDirectoryNotReady(t *testing.T) {
	s := startServer(t, Config{}, WithDirectory(notReadyDir{shard.NewRegistry()}))
	if ok, why := s.Ready(); ok || why != "directory: arbiter unreachable" {
		t.Fatalf("Ready() = %v, %q; want false, %q", ok, why, "directory: arbiter unreachable")
	}
	p := rawpeer.Dial(t, s.Addr().String())
	p.Hello("p", "")
	p.Write(codec.AppendName(nil, codec.TypeRegister, 1, "svc"))
	if f, e := p.ExpectError(codec.CodeBusy); f.Corr != 1 || e.Reason != "name directory busy; retry later" {
		t.Fatalf("REGISTER on a busy directory: corr %d %q", f.Corr, e.Reason)
	}
}

// unavailableDir refuses every claim at once as a fenced cluster node does.
type unavailableDir struct{ *shard.Registry }

func (unavailableDir) Claim(string, shard.ConnID, shard.ClaimFunc) error {
	return fmt.Errorf("%w: node fenced", shard.ErrUnavailable)
}

// TestRegisterUnavailable: a directory that cannot decide, at once or later (NATS
// unreachable, the node fenced), is answered UNAVAILABLE with the REGISTER's corr, a
// retry-after and the directory's reason; the connection stays open and its other frames
// are served.
func TestRegisterUnavailable(t *testing.T) {
	s := startServer(t, Config{}, WithDirectory(unavailableDir{shard.NewRegistry()}))
	p := rawpeer.Dial(t, s.Addr().String())
	p.Hello("p", "")
	p.Write(codec.AppendName(nil, codec.TypeRegister, 1, "svc"))
	f, e := p.ExpectError(codec.CodeUnavailable)
	if f.Corr != 1 || e.RetryAfterMs != 1000 || e.Flags&codec.ErrFlagClosing != 0 || !strings.Contains(e.Reason, "fenced") {
		t.Fatalf("REGISTER refused at once: corr %d, %+v; want corr 1, retry-after 1000, not closing", f.Corr, e)
	}
	pingBarrier(t, p, 2) // still open

	d := &laterDir{Registry: shard.NewRegistry()}
	s2 := startServer(t, Config{}, WithDirectory(d))
	q := rawpeer.Dial(t, s2.Addr().String())
	q.Hello("q", "")
	q.Write(codec.AppendName(nil, codec.TypeRegister, 3, "later"))
	d.fail(t, "later", fmt.Errorf("%w: no answer from the KV", shard.ErrUnavailable))
	f, e = q.ExpectError(codec.CodeUnavailable)
	if f.Corr != 3 || e.RetryAfterMs != 1000 || !strings.Contains(e.Reason, "no answer from the KV") {
		t.Fatalf("REGISTER refused later: corr %d, %+v; want corr 3, retry-after 1000, the directory's reason", f.Corr, e)
	}
	pingBarrier(t, q, 4)
}

// TestRepeatedRegisterWhilePendingBounded: REGISTERs repeated while a claim is decided
// elsewhere wait for its outcome, but no more than twice the name cap of them per
// connection: the rest get BUSY at once. Unbounded, a client repeating one REGISTER at line
// rate during a claim of seconds grew the loop's list, and the burst of answers at the
// outcome, by hundreds of megabytes.
func TestRepeatedRegisterWhilePendingBounded(t *testing.T) {
	d := &laterDir{Registry: shard.NewRegistry()}
	s := startServer(t, Config{MaxNamesPerConn: 4}, WithDirectory(d))
	p := rawpeer.Dial(t, s.Addr().String())
	p.Hello("svc", "")
	const n = 20 // > maxWaitingRegisters(4) = 8
	for i := range n {
		p.Write(codec.AppendName(nil, codec.TypeRegister, uint32(i+1), "svc"))
	}
	p.Write(codec.AppendFrame(nil, codec.TypePing, 0, 99, nil))
	busy := 0
	for {
		f, err := p.Read()
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == codec.TypePong {
			break
		}
		if e, err := codec.ParseError(f.Body); f.Type != codec.TypeError || err != nil || e.Code != codec.CodeBusy {
			t.Fatalf("before the outcome: %v; want ERROR BUSY", f.Type)
		}
		busy++
	}
	if want := n - maxWaitingRegisters(4); busy != want {
		t.Fatalf("%d REGISTERs refused BUSY while the claim waited; want %d", busy, want)
	}
	d.decide(t, "svc", false)
	for range maxWaitingRegisters(4) {
		p.Expect(codec.TypeOK)
	}
}
