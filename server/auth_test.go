package server

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

// testHash is a bcrypt hash at the lowest cost, so that tests spend milliseconds, not
// the 50 ms of the default cost, per check.
func testHash(t testing.TB, secret string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func mustCredentials(t testing.TB, users ...User) *Credentials {
	t.Helper()
	c, err := NewCredentials(users)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startAuthServer starts a server that authenticates users from creds.
func startAuthServer(t testing.TB, cfg Config, creds *Credentials) *Server {
	t.Helper()
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = time.Minute // bcrypt under -race on a loaded machine takes seconds
	}
	return startServer(t, cfg, WithCredentials(creds))
}

// withFrozenFailClock makes the failed-handshake limiter read *now (nanoseconds) instead
// of the clock, so that a slow bcrypt check on a loaded machine cannot refill an
// address's budget between two attempts. Set *now only between handshakes.
func withFrozenFailClock(now *atomic.Int64) Option {
	return func(s *Server) { s.auth.failClock = now.Load }
}

// helloRefused sends HELLO with token and expects a closing ERROR code.
func helloRefused(t testing.TB, s *Server, token string, code codec.ErrorCode) codec.ErrorBody {
	t.Helper()
	p := rawpeer.Dial(t, s.Addr().String())
	p.Write(codec.AppendHello(nil, 1, codec.Version, "x", token))
	_, e := p.ExpectError(code)
	if e.Flags&codec.ErrFlagClosing == 0 {
		t.Fatalf("ERROR %v without CLOSING", code)
	}
	p.ExpectClosed()
	return e
}

func TestCredentialsHello(t *testing.T) {
	creds := mustCredentials(t, User{Name: "alice", TokenHash: testHash(t, "wonderland"), Send: []string{"*"}})
	s := startAuthServer(t, Config{}, creds)
	for _, tt := range []struct{ name, token string }{
		{"wrong-secret", "alice:looking-glass"},
		{"unknown-user", "bob:wonderland"},
		{"no-separator", "wonderland"},
		{"empty", ""},
		{"user-only", "alice:"},
	} {
		t.Run(tt.name, func(t *testing.T) { helloRefused(t, s, tt.token, codec.CodeUnauthorized) })
	}
	if got := s.auth.failures.Load(); got != 5 {
		t.Fatalf("switchboard_auth_failures_total %d; want 5", got)
	}

	p := rawpeer.Dial(t, s.Addr().String())
	if w := p.Hello("alice-1", "alice:wonderland"); w.ConnID == 0 {
		t.Fatal("WELCOME without a connection id")
	}
	verifications := s.auth.verifications.Load()
	// The second HELLO with the same secret is checked from the cache, without bcrypt.
	q := rawpeer.Dial(t, s.Addr().String())
	q.Hello("alice-2", "alice:wonderland")
	if got := s.auth.verifications.Load(); got != verifications {
		t.Fatalf("bcrypt ran %d more times for a cached secret; want 0", got-verifications)
	}
	if s.auth.cacheHits.Load() != 1 {
		t.Fatalf("cache hits %d; want 1", s.auth.cacheHits.Load())
	}
	// A wrong secret is not accepted through the cache.
	helloRefused(t, s, "alice:wonderlanD", codec.CodeUnauthorized)
	waitFor(t, "no connection left in the handshake", func() bool { return s.auth.handshaking.Load() == 0 })
}

// TestCredentialsPipelinedFrames sends HELLO and more frames in one write: the frames wait
// in gnet's buffer while the HELLO is verified off the loop, and are answered in order
// after WELCOME.
func TestCredentialsPipelinedFrames(t *testing.T) {
	creds := mustCredentials(t, User{Name: "svc", TokenHash: testHash(t, "s3cret"), Register: []string{"svc.*"}})
	s := startAuthServer(t, Config{}, creds)
	p := rawpeer.Dial(t, s.Addr().String())
	b := codec.AppendHello(nil, 1, codec.Version, "svc", "svc:s3cret")
	b = codec.AppendName(b, codec.TypeRegister, 2, "svc.a")
	b = codec.AppendName(b, codec.TypeRegister, 3, "other")
	b = codec.AppendFrame(b, codec.TypePing, 0, 4, nil)
	p.Write(b)
	expectOutcomes(t, p, outcome{typ: codec.TypeWelcome, corr: 1}, outcome{typ: codec.TypeOK, corr: 2},
		errOutcome(3, codec.CodeForbidden), outcome{typ: codec.TypePong, corr: 4})
}

func TestForbidden(t *testing.T) {
	creds := mustCredentials(t,
		User{Name: "billing", TokenHash: testHash(t, "b"), Register: []string{"billing.*"},
			Send: []string{"audit", "billing.*"}, Request: []string{"billing.*"}},
		User{Name: "audit", TokenHash: testHash(t, "a"), Register: []string{"audit", "billing.*"}},
	)
	s := startAuthServer(t, Config{}, creds)
	aud := rawpeer.Dial(t, s.Addr().String())
	aud.Hello("audit", "audit:a")
	aud.Write(codec.AppendName(nil, codec.TypeRegister, 1, "audit"))
	aud.Write(codec.AppendName(nil, codec.TypeRegister, 2, "billing.ledger"))
	expectOutcomes(t, aud, outcome{typ: codec.TypeOK, corr: 1}, outcome{typ: codec.TypeOK, corr: 2})

	p := rawpeer.Dial(t, s.Addr().String())
	p.Hello("billing", "billing:b")
	for _, tt := range []struct {
		name  string
		frame []byte
		want  outcome
	}{
		{"register-allowed", codec.AppendName(nil, codec.TypeRegister, 10, "billing.invoices"), outcome{typ: codec.TypeOK, corr: 10}},
		{"register-forbidden", codec.AppendName(nil, codec.TypeRegister, 11, "payroll"), errOutcome(11, codec.CodeForbidden)},
		{"register-prefix-is-not-a-match", codec.AppendName(nil, codec.TypeRegister, 12, "billing"), errOutcome(12, codec.CodeForbidden)},
		{"send-exact", codec.AppendSend(nil, codec.FlagAck, 13, "audit", []byte("x")), outcome{typ: codec.TypeOK, corr: 13}},
		{"send-prefix", codec.AppendSend(nil, codec.FlagAck, 14, "billing.ledger", []byte("y")), outcome{typ: codec.TypeOK, corr: 14}},
		{"send-forbidden", codec.AppendSend(nil, codec.FlagAck, 15, "auditor", []byte("z")), errOutcome(15, codec.CodeForbidden)},
		{"request-forbidden", codec.AppendRequest(nil, 16, "audit", 0, nil), errOutcome(16, codec.CodeForbidden)},
		{"request-allowed-no-owner", codec.AppendRequest(nil, 17, "billing.nobody", 0, nil), errOutcome(17, codec.CodeNoRoute)},
		{"unregister-is-not-checked", codec.AppendName(nil, codec.TypeUnregister, 18, "billing.invoices"), outcome{typ: codec.TypeOK, corr: 18}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p.Write(tt.frame)
			expectOutcomes(t, p, tt.want)
		})
	}
	// A forbidden one-way SEND is dropped and counted; the connection stays open.
	forbidden := s.Stats().Errors[codec.CodeForbidden]
	p.Write(codec.AppendSend(nil, 0, 0, "auditor", []byte("dropped")))
	pingBarrier(t, p, 20)
	if got := s.Stats().Errors[codec.CodeForbidden]; got != forbidden+1 {
		t.Fatalf("FORBIDDEN count %d; want %d", got, forbidden+1)
	}
	expectMessage(t, aud, p, "billing", "x")
	expectMessage(t, aud, p, "billing", "y")
	// A user with no permissions listed may do nothing but PING, ECHO and REPLY.
	aud.Write(codec.AppendSend(nil, 0, 21, "billing.invoices", nil))
	expectOutcomes(t, aud, errOutcome(21, codec.CodeForbidden))
	pingBarrier(t, aud, 22)
}

// TestReloadCredentials changes a user's permissions under an open connection: its next
// frames are checked against the new ones. A removed user's connection stays open and
// may do nothing; a changed secret takes effect for new HELLOs only.
func TestReloadCredentials(t *testing.T) {
	hash := testHash(t, "one")
	s := startAuthServer(t, Config{}, mustCredentials(t, User{Name: "u", TokenHash: hash, Register: []string{"a"}}))
	p := rawpeer.Dial(t, s.Addr().String())
	p.Hello("u", "u:one")
	p.Write(codec.AppendName(nil, codec.TypeRegister, 1, "b"))
	expectOutcomes(t, p, errOutcome(1, codec.CodeForbidden))

	if err := s.ReloadCredentials(mustCredentials(t, User{Name: "u", TokenHash: hash, Register: []string{"b"}})); err != nil {
		t.Fatal(err)
	}
	p.Write(codec.AppendName(nil, codec.TypeRegister, 2, "b"))
	p.Write(codec.AppendName(nil, codec.TypeRegister, 3, "a"))
	expectOutcomes(t, p, outcome{typ: codec.TypeOK, corr: 2}, errOutcome(3, codec.CodeForbidden))
	// Same hash: the cached check survives the reload.
	before := s.auth.verifications.Load()
	rawpeer.Dial(t, s.Addr().String()).Hello("u2", "u:one")
	if s.auth.verifications.Load() != before {
		t.Fatal("a reload that kept the hash dropped the verified-secret cache")
	}

	// The user leaves the file: the open connection stays, every checked frame is refused.
	if err := s.ReloadCredentials(mustCredentials(t, User{Name: "v", TokenHash: hash, Register: []string{"*"}})); err != nil {
		t.Fatal(err)
	}
	p.Write(codec.AppendName(nil, codec.TypeRegister, 4, "b2"))
	expectOutcomes(t, p, errOutcome(4, codec.CodeForbidden))
	pingBarrier(t, p, 5)
	helloRefused(t, s, "u:one", codec.CodeUnauthorized)

	// Back, with a new secret: the old one no longer opens a connection; the open one,
	// which kept its user (its account id), gets the permissions again.
	if err := s.ReloadCredentials(mustCredentials(t, User{Name: "u", TokenHash: testHash(t, "two"), Register: []string{"*"}})); err != nil {
		t.Fatal(err)
	}
	p.Write(codec.AppendName(nil, codec.TypeRegister, 6, "b2"))
	expectOutcomes(t, p, outcome{typ: codec.TypeOK, corr: 6})
	helloRefused(t, s, "u:one", codec.CodeUnauthorized)
	rawpeer.Dial(t, s.Addr().String()).Hello("u3", "u:two")

	if err := s.ReloadCredentials(nil); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("ReloadCredentials(nil) = %v; want ErrNoCredentials", err)
	}
	plain := startServer(t, Config{})
	if err := plain.ReloadCredentials(mustCredentials(t)); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("ReloadCredentials on a server without credentials = %v; want ErrNoCredentials", err)
	}
}

// TestAuthFailuresPerIP: after AuthFailuresPerIP failed handshakes from one address, its
// next HELLO is refused UNAUTHORIZED with a retry-after, without a check (bcrypt does not
// run, even for the right secret).
func TestAuthFailuresPerIP(t *testing.T) {
	creds := mustCredentials(t, User{Name: "u", TokenHash: testHash(t, "right")})
	var now atomic.Int64
	now.Store(int64(time.Hour))
	s := startServer(t, Config{AuthFailuresPerIP: 3, HandshakeTimeout: time.Minute}, WithCredentials(creds), withFrozenFailClock(&now))
	for i := range 3 {
		if e := helloRefused(t, s, "u:wrong", codec.CodeUnauthorized); e.RetryAfterMs != 0 || e.Reason != "bad token" || e.Flags != codec.ErrFlagClosing {
			t.Fatalf("failure %d: %+v; want a checked refusal", i, e)
		}
	}
	checked := s.auth.verifications.Load()
	e := helloRefused(t, s, "u:right", codec.CodeUnauthorized)
	if e.RetryAfterMs == 0 || e.RetryAfterMs > 1000/3+1 || !strings.Contains(e.Reason, "too many failed") ||
		e.Flags != codec.ErrFlagClosing|codec.ErrFlagReconnect {
		t.Fatalf("4th HELLO: %+v; want a throttled refusal with retry-after ≤ 334 ms, CLOSING|RECONNECT (the token was not checked)", e)
	}
	if got := s.auth.verifications.Load(); got != checked {
		t.Fatalf("bcrypt ran %d times for a throttled HELLO; want 0", got-checked)
	}
	var m bytes.Buffer
	s.WritePrometheus(&m)
	for _, want := range []string{"switchboard_auth_failures_total 3\n", "switchboard_auth_throttled_total 1\n"} {
		if !strings.Contains(m.String(), want) {
			t.Errorf("metrics lack %q", strings.TrimSpace(want))
		}
	}
	// After the retry-after the address may try again.
	now.Add(int64(time.Duration(e.RetryAfterMs) * time.Millisecond))
	rawpeer.Dial(t, s.Addr().String()).Hello("u", "u:right")
}

// TestSharedTokenFailuresPerIP: the limiter covers the shared token too.
func TestSharedTokenFailuresPerIP(t *testing.T) {
	var now atomic.Int64
	s := startServer(t, Config{Token: "tok", AuthFailuresPerIP: 2}, withFrozenFailClock(&now))
	helloRefused(t, s, "to", codec.CodeUnauthorized)
	helloRefused(t, s, "tokk", codec.CodeUnauthorized)
	if e := helloRefused(t, s, "tok", codec.CodeUnauthorized); e.RetryAfterMs == 0 {
		t.Fatalf("3rd HELLO: %+v; want throttled", e)
	}
	if _, err := New(Config{Token: "tok"}, WithCredentials(mustCredentials(t))); !errors.Is(err, ErrTokenAndCredentials) {
		t.Fatalf("New with a token and credentials = %v; want ErrTokenAndCredentials", err)
	}
}

// TestHandshakeCap fills the handshake cap with silent connections: the next connection
// is refused BUSY at accept while an authenticated client keeps working; once a silent
// one leaves, a new client completes its handshake.
func TestHandshakeCap(t *testing.T) {
	s := startServer(t, Config{MaxHandshakes: 3, HandshakeTimeout: time.Minute})
	if got := s.Config().MaxHandshakes; got != 3 {
		t.Fatalf("effective max-handshakes %d; want 3", got)
	}
	authed := connect(t, s, "authed")
	var silent []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		silent = append(silent, c)
	}
	waitFor(t, "3 connections in the handshake", func() bool { return s.auth.handshaking.Load() == 3 })
	late := rawpeer.Dial(t, s.Addr().String())
	_, e := late.ExpectError(codec.CodeBusy)
	if e.RetryAfterMs == 0 || e.Flags&codec.ErrFlagReconnect == 0 || e.Reason != "too many connections in the handshake" {
		t.Fatalf("refusal %+v; want BUSY with retry-after and RECONNECT", e)
	}
	if got := s.refusedByReason()["handshakes"]; got != 1 {
		t.Fatalf(`refused{reason="handshakes"} = %d; want 1`, got)
	}
	pingBarrier(t, authed, 1)

	_ = silent[0].Close()
	waitFor(t, "the closed one to leave the handshake", func() bool { return s.auth.handshaking.Load() == 2 })
	connect(t, s, "next")
	if got := s.auth.handshaking.Load(); got != 2 {
		t.Fatalf("handshaking %d after a WELCOME; want 2", got)
	}
}

// TestHandshakeCapDefault: auto is a tenth of max-connections, at least 64 (or all).
func TestHandshakeCapDefault(t *testing.T) {
	for _, tt := range []struct{ maxConns, want int }{{100, 64}, {10_000, 1000}, {30, 30}} {
		s := startServer(t, Config{MaxConnections: tt.maxConns})
		if got := s.Config().MaxHandshakes; got != tt.want {
			t.Errorf("max-connections %d: max-handshakes %d; want %d", tt.maxConns, got, tt.want)
		}
	}
}

func TestNewCredentialsErrors(t *testing.T) {
	good := testHash(t, "x")
	_, err := NewCredentials([]User{
		{Name: "", TokenHash: good},
		{Name: "a:b", TokenHash: good},
		{Name: "dup", TokenHash: good},
		{Name: "dup", TokenHash: good},
		{Name: "plain", TokenHash: "x"},
		{Name: "pat", TokenHash: good, Send: []string{"a*b", ""}, Register: []string{"*x"}},
	})
	if err == nil {
		t.Fatal("NewCredentials accepted bad users")
	}
	for _, want := range []string{`user ""`, `user "a:b"`, `"dup": defined twice`, `"plain": token-hash`,
		`send: pattern "a*b"`, "send: empty pattern", `register: pattern "*x"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestPatternsMatch(t *testing.T) {
	p, errs := compilePatterns([]string{"audit", "billing.*", "x*"})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, tt := range []struct {
		name string
		want bool
	}{{"audit", true}, {"audit2", false}, {"billing.a", true}, {"billing.", true}, {"billing", false},
		{"x", true}, {"xyz", true}, {"y", false}} {
		if got := p.Match([]byte(tt.name)); got != tt.want {
			t.Errorf("Match(%q) = %v; want %v", tt.name, got, tt.want)
		}
	}
	all, _ := compilePatterns([]string{"*"})
	var none Patterns
	if !all.Match([]byte("anything")) || none.Match([]byte("anything")) {
		t.Fatal(`"*" must match everything and no pattern nothing`)
	}
	if n := testing.AllocsPerRun(100, func() { p.Match([]byte("billing.zzz")) }); n != 0 {
		t.Fatalf("Match allocates %v times", n)
	}
}

func TestHashToken(t *testing.T) {
	h, err := HashToken([]byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("s3cret")) != nil {
		t.Fatal("HashToken's hash does not match its secret")
	}
	if _, err := HashToken(nil); err == nil {
		t.Fatal("HashToken accepted an empty secret")
	}
	if _, err := HashToken(bytes.Repeat([]byte("x"), MaxSecretLen+1)); err == nil {
		t.Fatal("HashToken accepted a secret bcrypt would truncate")
	}
}

// TestCredentialsCoalesced: many connections presenting the same token at once (a
// service's pool reconnecting) wait for one bcrypt check instead of filling the verify
// queue (8 per verifier) and getting BUSY.
func TestCredentialsCoalesced(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.DefaultCost) // slow on purpose
	if err != nil {
		t.Fatal(err)
	}
	s := startAuthServer(t, Config{}, mustCredentials(t, User{Name: "pool", TokenHash: string(h)}))
	const n = 40
	peers := make([]*rawpeer.Peer, n)
	var batch []byte
	for i := range peers {
		peers[i] = rawpeer.Dial(t, s.Addr().String())
	}
	batch = codec.AppendHello(batch, 1, codec.Version, "pool", "pool:pw")
	for _, p := range peers {
		p.Write(batch)
	}
	for _, p := range peers {
		p.Expect(codec.TypeWelcome)
	}
	if busy, runs := s.auth.busy.Load(), s.auth.verifications.Load(); busy != 0 || runs > 2 {
		t.Fatalf("%d BUSY and %d bcrypt runs for %d HELLOs with one token; want 0 and at most 2", busy, runs, n)
	}
}

// withHandshakeWait sets how long the acceptor waits for a handshake slot.
func withHandshakeWait(d time.Duration) Option { return func(s *Server) { s.handshakeWait = d } }

// TestHandshakeCapPacesAccept: while the handshake cap is full the acceptor leaves new
// clients in the kernel's backlog instead of accepting and refusing them, so a client
// that arrives during a flood of silent connections gets in as soon as a slot frees.
// (Before, it was refused BUSY at once, and a flooder reconnecting at once kept the
// acceptor busy accepting and refusing.)
func TestHandshakeCapPacesAccept(t *testing.T) {
	s := startServer(t, Config{MaxHandshakes: 1, HandshakeTimeout: time.Minute}, withHandshakeWait(time.Hour))
	silent, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	waitFor(t, "the silent connection in the handshake", func() bool { return s.auth.handshaking.Load() == 1 })
	next := rawpeer.Dial(t, s.Addr().String()) // connected in the kernel's backlog
	next.Write(codec.AppendHello(nil, 1, codec.Version, "next", ""))
	waitFor(t, "the acceptor to pause", func() bool { return s.acceptPauses[pauseHandshakes].Load() >= 1 })
	_ = silent.Close()
	next.Expect(codec.TypeWelcome)
	if n := s.refusedByReason()["handshakes"]; n != 0 {
		t.Fatalf(`refused{reason="handshakes"} = %d; want 0`, n)
	}
}

// TestHandshakeSpacing: accepts are spaced evenly (handshake-timeout / max-handshakes)
// only while silent peers fill the handshake: half the slots taken and a timeout seen
// within the last handshake-timeout.
func TestHandshakeSpacing(t *testing.T) {
	const timeout, slots = 2 * time.Second, 2000
	gap := timeout / slots // 1 ms
	t0 := time.Unix(1000, 0)
	var h hsSpacing
	step := func(now time.Time, timeouts uint64, handshaking int64, draining bool, want time.Duration) {
		t.Helper()
		if got := h.next(now, timeouts, handshaking, slots, timeout, draining); got != want {
			t.Fatalf("at %v, %d timeouts, %d handshaking: wait %v; want %v", now.Sub(t0), timeouts, handshaking, got, want)
		}
	}
	step(t0, 0, 1999, false, 0) // full, but no timeout yet: a storm of real clients
	step(t0, 1, 999, false, 0)  // a timeout, but under half the slots
	step(t0, 1, 1000, false, gap)
	step(t0, 1, 1000, false, 2*gap)          // booked back to back
	step(t0.Add(2*gap), 1, 1000, false, gap) // waited its turn
	step(t0.Add(time.Second), 1, 1500, true, 0)
	step(t0.Add(timeout), 1, 1500, false, 0) // the last timeout is a handshake-timeout old
	step(t0.Add(timeout), 2, 1500, false, gap)
}

// TestHandshakeTimeoutWhileVerifyingOverTCP: a HELLO whose credentials check is still
// running at the handshake timeout gets ERROR HANDSHAKE_TIMEOUT and the connection is
// closed at the timeout, not when the check ends (PROTOCOL 420: the timeout covers the
// check); the check's late result finds the connection gone, and the same credentials
// work on a new connection afterwards. The verifier is held by a test gate, so the check
// is still running at the timeout however fast or loaded the machine is.
func TestHandshakeTimeoutWhileVerifyingOverTCP(t *testing.T) {
	const timeout = 200 * time.Millisecond
	gate := make(chan struct{})
	var release sync.Once
	open := func() { release.Do(func() { close(gate) }) }
	creds := mustCredentials(t, User{Name: "alice", TokenHash: testHash(t, "wonderland"), Send: []string{"*"}})
	s := startServer(t, Config{HandshakeTimeout: timeout}, WithCredentials(creds),
		func(s *Server) { s.auth.verifyGate = gate })
	t.Cleanup(open) // before the server's Shutdown, which waits for the verifiers

	start := time.Now() // before the dial: the server's timer starts later
	p := rawpeer.Dial(t, s.Addr().String())
	p.Write(codec.AppendHello(nil, 1, codec.Version, "alice-1", "alice:wonderland"))
	_, e := p.ExpectError(codec.CodeHandshakeTimeout)
	if elapsed := time.Since(start); elapsed < timeout {
		t.Fatalf("HANDSHAKE_TIMEOUT after %v; the timeout is %v and must never fire early", elapsed, timeout)
	}
	if e.Flags != codec.ErrFlagClosing|codec.ErrFlagReconnect {
		t.Errorf("HANDSHAKE_TIMEOUT flags %v; want CLOSING|RECONNECT", e.Flags)
	}
	p.ExpectClosed()
	if got := s.auth.verifications.Load(); got != 0 {
		t.Fatalf("%d checks ran before the timeout; the test needs the HELLO still being verified", got)
	}
	if got := s.Stats().HandshakeTimeouts; got != 1 {
		t.Fatalf("handshake timeouts counted %d; want 1", got)
	}

	open() // the check now runs and its result finds the connection gone
	waitFor(t, "the held check to run", func() bool { return s.auth.verifications.Load() == 1 })
	waitFor(t, "no connection left in the handshake", func() bool { return s.auth.handshaking.Load() == 0 })
	q := rawpeer.Dial(t, s.Addr().String())
	if w := q.Hello("alice-2", "alice:wonderland"); w.ConnID == 0 {
		t.Fatal("WELCOME without a connection id")
	}
}

// TestInputWhileVerifyingBounded: what a client sends after its HELLO while the HELLO's
// credentials are checked waits in gnet's inbound buffer, but no more than verifyInputMax
// of it: past that the connection is closed with ERROR BAD_FRAME (and then a clean EOF).
// Unbounded, one unauthenticated connection put 293 MB into the server in 1.5 s. The
// verifier is held by a test gate, so the check is still running however fast the machine.
func TestInputWhileVerifyingBounded(t *testing.T) {
	gate := make(chan struct{})
	var release sync.Once
	open := func() { release.Do(func() { close(gate) }) }
	creds := mustCredentials(t, User{Name: "alice", TokenHash: testHash(t, "wonderland")})
	s := startServer(t, Config{HandshakeTimeout: time.Minute}, WithCredentials(creds),
		func(s *Server) { s.auth.verifyGate = gate })
	t.Cleanup(open)
	p := rawpeer.Dial(t, s.Addr().String())
	p.Write(codec.AppendHello(nil, 1, codec.Version, "alice-1", "alice:wonderland"))
	// ~64 KiB a write, 1 MiB in all: four times the bound.
	junk := bytes.Repeat(codec.AppendFrame(nil, codec.TypePing, 0, 2, make([]byte, 1000)), 64)
	for i := 0; i < 16; i++ {
		_ = p.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := p.Conn.Write(junk); err != nil {
			break // closed by the server: what it wrote first is still to be read
		}
	}
	if _, e := p.ExpectError(codec.CodeBadFrame); e.Flags&codec.ErrFlagClosing == 0 {
		t.Fatalf("ERROR %+v; want CLOSING", e)
	}
	p.ExpectClosed()
}
