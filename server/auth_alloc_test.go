package server

import (
	"testing"

	"github.com/switchboard/switchboard/codec"
)

// withPermissions gives the test server of newTestLoops a credentials table with one user
// ("svc", realistic pattern lists where the matching pattern comes last) and makes c that
// user.
func withPermissions(t testing.TB, s *Server, c *conn) {
	t.Helper()
	pats := []string{"audit", "billing.*", "orders.*", "loc*", "remote"}
	creds := mustCredentials(t, User{Name: "svc", TokenHash: testHash(t, "x"), Register: pats, Send: pats, Request: pats})
	s.auth.ids = make(map[string]uint32)
	s.auth.table.Store(s.auth.compile(creds, nil))
	c.user = s.auth.table.Load().users["svc"].id
}

// TestNoAllocsPermitted: the permission check of a credentials user allocates nothing,
// allowed or FORBIDDEN.
func TestNoAllocsPermitted(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under -race; allocation counts run in `make test`")
	}
	s, loops := newTestLoops(t, 1)
	a, _ := addConn(t, loops[0], "a")
	local, _ := addConn(t, loops[0], "local")
	mustRegister(t, s, "local", local)
	withPermissions(t, s, a)
	for _, tt := range []struct {
		name  string
		frame []byte
	}{
		{"send-allowed", codec.AppendSend(nil, 0, 0, "local", []byte("x"))},
		{"send-forbidden", codec.AppendSend(nil, 0, 7, "payroll", []byte("x"))},
		{"request-forbidden", codec.AppendRequest(nil, 8, "payroll", 0, nil)},
		{"register-forbidden", codec.AppendName(nil, codec.TypeRegister, 9, "payroll")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := decodeOne(t, tt.frame)
			n := testing.AllocsPerRun(200, func() {
				loops[0].dispatch(a, f, 0)
				loops[0].flushDirty()
				local.pending = 0
			})
			if n != 0 {
				t.Fatalf("%v allocations per frame; want 0", n)
			}
		})
	}
}

// BenchmarkDispatchPermissions is SEND with and without a credentials user in the same
// run: the cost of the per-frame permission check.
func BenchmarkDispatchPermissions(b *testing.B) {
	s, loops := newTestLoops(b, 2)
	a, _ := addConn(b, loops[0], "a")
	local, _ := addConn(b, loops[0], "local")
	remote, _ := addConn(b, loops[1], "remote")
	mustRegister(b, s, "local", local)
	mustRegister(b, s, "remote", remote)
	loops[1].armed.Store(true)
	withPermissions(b, s, a)
	user := a.user
	for _, target := range []string{"local", "remote"} {
		frame := codec.AppendSend(nil, 0, 0, target, make([]byte, 16))
		var batch []byte
		for range 64 {
			batch = append(batch, frame...)
		}
		for _, on := range []bool{false, true} {
			name := "send-" + target + "/off"
			if on {
				name = "send-" + target + "/on"
			}
			b.Run(name, func(b *testing.B) {
				a.user = 0
				if on {
					a.user = user
				}
				b.SetBytes(int64(len(frame)))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i += 64 {
					off := 0
					for off < len(batch) {
						f, n, _ := codec.Decode(batch[off:], codec.DefaultMaxFrame)
						off += n
						loops[0].dispatch(a, f, 0)
					}
					loops[0].flushDirty()
					local.pending = 0
					loops[1].drainBatch(loops[1].inbox.Cap())
					remote.pending = 0
				}
			})
		}
	}
}
