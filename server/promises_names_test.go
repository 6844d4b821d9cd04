package server

import (
	"testing"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

// Promise tests for REGISTER and UNREGISTER (docs/PROTOCOL.md 4.4), each checked by what
// a sender then sees: a name routes (OK for an acknowledged SEND, the MESSAGE at its
// owner) or it does not (NO_ROUTE).

// expectRoutes sends an acknowledged SEND from src to name and fails unless it is
// acknowledged and owner receives it whole.
func expectRoutes(t testing.TB, src, owner *rawpeer.Peer, srcName, name string, corr uint32) {
	t.Helper()
	payload := "to " + name
	src.Write(codec.AppendSend(nil, codec.FlagAck, corr, name, []byte(payload)))
	expectOutcomes(t, src, outcome{typ: codec.TypeOK, corr: corr})
	expectMessage(t, owner, src, srcName, payload)
}

// expectNoRoute sends an acknowledged SEND from src to name and fails unless it is
// answered NO_ROUTE.
func expectNoRoute(t testing.TB, src *rawpeer.Peer, name string, corr uint32) {
	t.Helper()
	src.Write(codec.AppendSend(nil, codec.FlagAck, corr, name, []byte("x")))
	expectOutcomes(t, src, errOutcome(corr, codec.CodeNoRoute))
}

// TestRegisterIdempotentAndCapped: REGISTER of an owned name succeeds again and the name
// keeps routing; the name past MaxNamesPerConn is refused BUSY (same corr, connection
// open) while the first ones route, and releasing one makes room.
func TestRegisterIdempotentAndCapped(t *testing.T) {
	const maxNames = 3
	s := startServer(t, Config{MaxNamesPerConn: maxNames})
	owner := connect(t, s, "owner")
	src := connect(t, s, "src")
	reg := func(corr uint32, name string, want outcome) {
		t.Helper()
		owner.Write(codec.AppendName(nil, codec.TypeRegister, corr, name))
		f := expectOutcomes(t, owner, want)
		if want.typ == codec.TypeError {
			if e, _ := codec.ParseError(f[0].Body); e.Flags&codec.ErrFlagClosing != 0 {
				t.Fatalf("REGISTER %s: %v closes the connection", name, e.Code)
			}
		}
	}
	steps := []struct {
		corr uint32
		name string
		want outcome
	}{
		{1, "n0", outcome{typ: codec.TypeOK, corr: 1}},
		{2, "n0", outcome{typ: codec.TypeOK, corr: 2}}, // again: idempotent
		{3, "n1", outcome{typ: codec.TypeOK, corr: 3}},
		{4, "n2", outcome{typ: codec.TypeOK, corr: 4}},
		{5, "n3", errOutcome(5, codec.CodeBusy)},       // one past the cap
		{6, "n1", outcome{typ: codec.TypeOK, corr: 6}}, // owned: idempotent even at the cap
	}
	for _, st := range steps {
		reg(st.corr, st.name, st.want)
	}
	if n := s.Stats().Names; n != maxNames {
		t.Fatalf("%d names registered; want %d", n, maxNames)
	}
	for i, name := range []string{"n0", "n1", "n2"} {
		expectRoutes(t, src, owner, "src", name, uint32(10+i))
	}
	expectNoRoute(t, src, "n3", 20)

	owner.Write(codec.AppendName(nil, codec.TypeUnregister, 7, "n0"))
	expectOutcomes(t, owner, outcome{typ: codec.TypeOK, corr: 7})
	reg(8, "n3", outcome{typ: codec.TypeOK, corr: 8})
	expectRoutes(t, src, owner, "src", "n3", 21)
	expectNoRoute(t, src, "n0", 22)
}

// TestUnregisterOwnership: UNREGISTER of a name the connection does not own (free, or
// another connection's) is NOT_OWNER and changes nothing; of its own name it is OK and the
// name stops routing.
func TestUnregisterOwnership(t *testing.T) {
	tests := []struct {
		name   string
		target string // the name u unregisters
		want   codec.ErrorCode
		routes bool // the name still routes to its owner afterwards
	}{
		{"free-name", "nobody", codec.CodeNotOwner, false},
		{"other-owner", "theirs", codec.CodeNotOwner, true},
		{"own-name", "mine", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, Config{})
			them := registered(t, s, "theirs")
			u := registered(t, s, "mine")
			src := connect(t, s, "src")
			u.Write(codec.AppendName(nil, codec.TypeUnregister, 5, tt.target))
			if tt.want == 0 {
				expectOutcomes(t, u, outcome{typ: codec.TypeOK, corr: 5})
			} else {
				f := expectOutcomes(t, u, errOutcome(5, tt.want))
				if e, _ := codec.ParseError(f[0].Body); e.Flags&codec.ErrFlagClosing != 0 {
					t.Fatalf("%v closes the connection", e.Code)
				}
			}
			if tt.routes {
				expectRoutes(t, src, them, "src", tt.target, 6)
			} else {
				expectNoRoute(t, src, tt.target, 6)
			}
			// u's other registrations are untouched and u is still served.
			if tt.target != "mine" {
				expectRoutes(t, src, u, "src", "mine", 7)
			}
			pingBarrier(t, u, 8)
		})
	}
}
