package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/limits"
	"github.com/switchboard/switchboard/shard"
)

// Authentication: who may complete a HELLO, and what a user may do afterwards.
//
// Three modes, fixed at New: no authentication (Config.Token "" and no credentials: a
// HELLO must carry an empty token), the shared token (Config.Token: compared in constant
// time through SHA-256 digests, so neither content nor length leaks), and credentials
// (WithCredentials: the token is "USER:SECRET", checked against the user's bcrypt hash).
//
// bcrypt costs 50-230 ms of CPU per check at cost 10, which must never run on an event
// loop. A HELLO whose secret is not in the cache goes to a small pool of verifier
// goroutines through a bounded queue (full: BUSY, retry-after 1 s); the connection waits
// in stateVerifying, its later input held in gnet's buffer, and the outcome comes back to
// its loop through EventLoop.Execute. Successful checks are cached per user as an
// HMAC-SHA256 of the secret under a per-process random key, so only a user's first HELLO
// with a secret (per process and per token hash) costs bcrypt; later ones cost one HMAC
// on the loop (about a microsecond). Failures are never cached.
//
// Permissions are looked up per frame through an atomically swapped table: a connection
// holds its user's account id (conn.user), stable across reloads for a user name, and
// authTable.perms maps ids to compiled Permissions. ReloadCredentials swaps the table, so
// open connections keep their user and the next frame each sends is checked against the
// new permissions; a user removed from the file keeps its open connections, which may do
// nothing (every REGISTER, SEND and REQUEST is FORBIDDEN) until they close.

const (
	// verifyQueuePerWorker bounds the HELLOs waiting for a verifier: a check at cost 10
	// takes 50 ms on a fast core and 230 ms on the 2-vCPU VM of docs/BENCHMARKS.md, so 8
	// waiting keeps the wait inside the default 2 s handshake timeout.
	verifyQueuePerWorker = 8
	// maxVerifiers caps the verifier goroutines: bcrypt competes with the loops for CPU.
	maxVerifiers = 4
)

// auth is a server's authentication state. Fields are immutable after New unless marked.
type auth struct {
	hasToken bool
	tokenSum [sha256.Size]byte // SHA-256 of Config.Token
	macKey   [32]byte          // per-process key of the verified-secret cache
	initial  *Credentials      // from WithCredentials; nil in the other modes

	table atomic.Pointer[authTable] // nil without credentials; swapped by ReloadCredentials

	mu  sync.Mutex        // guards ids; taken only by New and ReloadCredentials
	ids map[string]uint32 // account id of every user name seen, never reused

	queue chan *verifyJob // bounded; nil without credentials
	// pending holds the checks queued or running, by user and secret, so that the HELLOs
	// of many connections with the same token (a service's pool reconnecting) wait for
	// one bcrypt instead of filling the queue. Guarded by pmu, held for a map operation.
	pmu     sync.Mutex
	pending map[pendingKey]*verifyJob
	workers int
	wg      sync.WaitGroup // the verifier goroutines
	// dummy is a bcrypt hash of nothing anyone knows: unknown users are checked against it
	// so that the time a refusal takes does not tell which users exist. Made once, by a
	// verifier.
	dummyOnce sync.Once
	dummy     []byte

	failLimit *limits.AuthFailures // per-address failed handshakes; nil = off
	failClock func() int64         // the limiter's clock (nanoseconds); nil: the server's clock
	// verifyGate, when set (tests only), is received from by a verifier before each check,
	// so a test can hold a HELLO in stateVerifying for as long as it needs.
	verifyGate <-chan struct{}

	// handshaking counts connections admitted and not yet past HELLO (atomic);
	// maxHandshakes caps it (immutable after Start).
	handshaking   atomic.Int64
	maxHandshakes int64
	// slotFree wakes the acceptor, which waits while the cap is full (accept.go), when a
	// connection leaves a full handshake cap. Capacity 1; sends never block.
	slotFree chan struct{}

	failures      atomic.Uint64 // HELLOs refused UNAUTHORIZED after a check
	throttled     atomic.Uint64 // HELLOs refused unchecked: too many failures from the address
	busy          atomic.Uint64 // HELLOs refused BUSY: the verify queue was full
	cacheHits     atomic.Uint64 // HELLOs accepted from the cache, without bcrypt
	verifications atomic.Uint64 // bcrypt checks run
}

// authTable is one generation of the credentials: immutable once published.
type authTable struct {
	users map[string]*userEntry
	perms []*Permissions // by account id; nil for ids whose user is no longer in the file
}

// userEntry is one user of a table. verified survives a reload that keeps the hash.
type userEntry struct {
	id       uint32
	hash     []byte
	verified atomic.Pointer[[sha256.Size]byte] // HMAC of the last secret that passed bcrypt
}

// permsOf returns the permissions of account id (nil: none).
func (t *authTable) permsOf(id uint32) *Permissions {
	if int(id) < len(t.perms) {
		return t.perms[id]
	}
	return nil
}

// verifyJob is one bcrypt check and the HELLOs waiting for it. It owns copies of
// everything it needs: the HELLO's bytes were borrowed from gnet.
type verifyJob struct {
	key     pendingKey
	secret  []byte
	entry   *userEntry    // nil: unknown user
	waiters []helloWaiter // guarded by auth.pmu until the job leaves pending
}

type pendingKey struct {
	user string
	mac  [sha256.Size]byte
}

// helloWaiter is a connection waiting in stateVerifying for a job.
type helloWaiter struct {
	lp   *loop
	id   shard.ConnID
	corr uint32
	name string // the HELLO client name
}

// WithCredentials makes the server authenticate users from c (see User) instead of a
// shared token; Config.Token must then be empty. Permissions apply from the first frame
// after WELCOME; ReloadCredentials replaces them at run time.
func WithCredentials(c *Credentials) Option { return func(s *Server) { s.auth.initial = c } }

// initAuth sets up the authentication mode; called by New after the options.
func (s *Server) initAuth() error {
	a := &s.auth
	if a.initial != nil && s.cfg.Token != "" {
		return ErrTokenAndCredentials
	}
	a.hasToken = s.cfg.Token != ""
	a.tokenSum = sha256.Sum256(s.token)
	a.failLimit = limits.NewAuthFailures(s.cfg.AuthFailuresPerIP, 0)
	if a.initial == nil {
		return nil
	}
	if _, err := rand.Read(a.macKey[:]); err != nil {
		return err
	}
	a.ids = make(map[string]uint32)
	a.table.Store(a.compile(a.initial, nil))
	a.workers = min(max(1, runtime.GOMAXPROCS(0)/2), maxVerifiers)
	a.queue = make(chan *verifyJob, a.workers*verifyQueuePerWorker)
	a.pending = make(map[pendingKey]*verifyJob)
	return nil
}

// compile builds a table from c, keeping account ids by name and, for users whose hash
// did not change, the verified-secret cache of prev. Called with a.mu held, or by New.
func (a *auth) compile(c *Credentials, prev *authTable) *authTable {
	t := &authTable{users: make(map[string]*userEntry, len(c.users))}
	for _, u := range c.users {
		id, ok := a.ids[u.name]
		if !ok {
			id = uint32(len(a.ids) + 1) // 0 means "no user"
			a.ids[u.name] = id
		}
		e := &userEntry{id: id, hash: u.hash}
		if prev != nil {
			if old := prev.users[u.name]; old != nil && bytes.Equal(old.hash, u.hash) {
				e.verified.Store(old.verified.Load())
			}
		}
		t.users[u.name] = e
		for int(id) >= len(t.perms) {
			t.perms = append(t.perms, nil)
		}
		t.perms[id] = u.perms
	}
	return t
}

// ReloadCredentials replaces the users and permissions of a server started with
// WithCredentials (ErrNoCredentials otherwise). New HELLOs are checked against c at once;
// open connections keep their user and their next frames are checked against the user's
// new permissions (none if the user is gone). A user whose token hash changed must pass
// bcrypt again on its next HELLO. Safe for concurrent use.
func (s *Server) ReloadCredentials(c *Credentials) error {
	a := &s.auth
	if c == nil || a.table.Load() == nil {
		return ErrNoCredentials
	}
	a.mu.Lock()
	a.table.Store(a.compile(c, a.table.Load()))
	a.mu.Unlock()
	s.log.Info("credentials reloaded", "users", c.Len())
	return nil
}

// startAuth resolves the handshake cap and starts the verifiers; called by StartListener.
func (s *Server) startAuth(maxConns int) {
	a := &s.auth
	a.maxHandshakes = int64(HandshakeCap(s.cfg.MaxHandshakes, maxConns))
	a.slotFree = make(chan struct{}, 1)
	a.wg.Add(a.workers)
	for range a.workers {
		go s.verifier()
	}
}

// HandshakeCap is the cap on connections in their handshake for the max-handshakes
// setting set (0: auto, a tenth of the connections, at least 64) and the connection cap
// maxConns in force: never above maxConns.
func HandshakeCap(set, maxConns int) int {
	n := set
	if n <= 0 {
		n = max(maxConns/10, min(64, maxConns))
	}
	return min(n, maxConns)
}

// stopAuth stops the verifiers; called by Shutdown once the loops, which queue the jobs,
// have stopped.
func (s *Server) stopAuth() {
	if s.auth.queue != nil {
		close(s.auth.queue)
	}
	s.auth.wg.Wait()
}

// handshakesFull reports whether the handshake cap refuses a new connection. Acceptor.
func (s *Server) handshakesFull() bool {
	return s.auth.handshaking.Load() >= s.auth.maxHandshakes
}

// enterHandshake counts an admitted connection as in the handshake. Acceptor, before
// the connection is enrolled.
func (s *Server) enterHandshake(c *conn) {
	c.flags |= flagHSCounted
	s.auth.handshaking.Add(1)
}

// leaveHandshake stops counting c as in the handshake (WELCOME sent, or closed). On c's
// loop, or on the acceptor before c was enrolled.
func (s *Server) leaveHandshake(c *conn) {
	if c.flags&flagHSCounted != 0 {
		c.flags &^= flagHSCounted
		if s.auth.handshaking.Add(-1) == s.auth.maxHandshakes-1 { // the cap was full
			select {
			case s.auth.slotFree <- struct{}{}:
			default:
			}
		}
	}
}

// authenticate checks a HELLO's token. It returns true when c may be welcomed now (with
// c.user set under credentials); false when c is closing, or waits for a verifier
// (stateVerifying): then verified finishes the handshake.
func (lp *loop) authenticate(c *conn, h codec.Hello, corr uint32) bool {
	a := &lp.srv.auth
	if d := a.failLimit.Blocked(c.ip.Addr(), a.failNow(lp.srv)); d > 0 {
		a.throttled.Add(1)
		// Not checked: the token may be right, so the client may come back after d.
		lp.closeWithRetry(c, codec.CodeUnauthorized, codec.ErrFlagReconnect, d, "too many failed handshakes from this address")
		return false
	}
	t := a.table.Load()
	if t == nil {
		sum := sha256.Sum256(h.Token)
		if !a.hasToken && len(h.Token) != 0 || a.hasToken && subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) != 1 {
			lp.authFailed(c)
			return false
		}
		return true
	}
	user, secret, _ := bytes.Cut(h.Token, []byte{':'})
	e := t.users[string(user)]
	mac := a.sum(secret)
	if v := e.verifiedMAC(); v != nil && hmac.Equal(v[:], mac[:]) {
		a.cacheHits.Add(1)
		c.user = e.id
		return true
	}
	w := helloWaiter{lp: lp, id: c.id, corr: corr, name: string(h.Name)}
	k := pendingKey{user: string(user), mac: mac}
	a.pmu.Lock()
	queued := false
	if j := a.pending[k]; j != nil { // the same token is being checked: wait for that
		j.waiters = append(j.waiters, w)
		queued = true
	} else {
		j = &verifyJob{key: k, secret: bytes.Clone(secret), entry: e, waiters: []helloWaiter{w}}
		select {
		case a.queue <- j:
			a.pending[k] = j
			queued = true
		default:
		}
	}
	a.pmu.Unlock()
	if !queued {
		a.busy.Add(1)
		lp.closeWithRetry(c, codec.CodeBusy, codec.ErrFlagReconnect, time.Second, "too many handshakes being verified")
		return false
	}
	c.state = stateVerifying
	return false
}

func (e *userEntry) verifiedMAC() *[sha256.Size]byte {
	if e == nil {
		return nil
	}
	return e.verified.Load()
}

// sum is the cache key of a secret.
func (a *auth) sum(secret []byte) [sha256.Size]byte {
	m := hmac.New(sha256.New, a.macKey[:])
	m.Write(secret)
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// verifier runs bcrypt checks off the loops and hands each outcome to the job's loop.
func (s *Server) verifier() {
	defer s.auth.wg.Done()
	a := &s.auth
	for j := range a.queue {
		if a.verifyGate != nil {
			<-a.verifyGate
		}
		ok := a.check(j)
		if ok {
			// Cache the secret before the job leaves pending: a HELLO with the same
			// token arriving in between would otherwise find neither and run bcrypt again.
			// (verified, on the loop, checks the table again before it welcomes.)
			if cur := a.table.Load().users[j.key.user]; cur != nil && bytes.Equal(cur.hash, j.entry.hash) {
				mac := j.key.mac
				cur.verified.Store(&mac)
			}
		}
		a.pmu.Lock()
		delete(a.pending, j.key)
		waiters := j.waiters
		a.pmu.Unlock()
		for _, w := range waiters {
			// Fails only when the engine is stopping; the connection goes with it.
			_ = w.lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
				w.lp.verified(w, j, ok)
				return nil
			}))
		}
	}
}

// check runs bcrypt for j. Verifier goroutines only.
func (a *auth) check(j *verifyJob) bool {
	a.verifications.Add(1)
	if j.entry == nil {
		a.dummyOnce.Do(func() {
			// The cost of the real hashes, so that both take as long.
			cost := bcrypt.DefaultCost
			for _, e := range a.table.Load().users {
				if c, err := bcrypt.Cost(e.hash); err == nil {
					cost = c
				}
				break
			}
			var pw [32]byte
			_, _ = rand.Read(pw[:])
			a.dummy, _ = bcrypt.GenerateFromPassword(pw[:], cost)
		})
		_ = bcrypt.CompareHashAndPassword(a.dummy, j.secret)
		return false
	}
	return bcrypt.CompareHashAndPassword(j.entry.hash, j.secret) == nil
}

// verified finishes a handshake that waited for a verifier. On the connection's loop.
func (lp *loop) verified(w helloWaiter, j *verifyJob, ok bool) {
	defer lp.flushDirty()
	c, found := lp.conns.Get(w.id)
	if !found || c.state != stateVerifying {
		return // closed meanwhile (handshake timeout, peer gone)
	}
	c.state = stateHandshake
	a := &lp.srv.auth
	if ok {
		// The table may have changed while bcrypt ran: only the hash checked counts.
		cur := a.table.Load().users[j.key.user]
		ok = cur != nil && bytes.Equal(cur.hash, j.entry.hash)
		if ok {
			mac := j.key.mac
			cur.verified.Store(&mac)
		}
	}
	switch {
	case !ok:
		lp.authFailed(c)
		return
	case lp.srv.draining.Load():
		lp.closeWithError(c, codec.CodeShuttingDown, "node is draining")
		return
	}
	c.user = j.entry.id
	lp.welcome(c, w.name, w.corr)
	if c.gc.InboundBuffered() > 0 {
		_ = c.gc.Wake(nil) // frames sent after the HELLO wait in gnet's buffer
	}
}

// failNow is the failed-handshake limiter's clock: the server's, unless a test set one.
func (a *auth) failNow(s *Server) int64 {
	if a.failClock != nil {
		return a.failClock()
	}
	return s.clock()
}

// authFailed refuses a HELLO whose token did not check out, and counts it against the
// peer's address.
func (lp *loop) authFailed(c *conn) {
	a := &lp.srv.auth
	a.failures.Add(1)
	lp.stats.unauthorized.Add(1)
	a.failLimit.Fail(c.ip.Addr(), a.failNow(lp.srv))
	lp.closeWithError(c, codec.CodeUnauthorized, "bad token")
}

// closeWithRetry is closeWithError with a retry-after and extra flags.
func (lp *loop) closeWithRetry(c *conn, code codec.ErrorCode, flags codec.ErrorFlags, retry time.Duration, reason string) {
	b := c.buf()
	b.B = codec.AppendError(b.B, 0, codec.ErrorBody{Code: code, RetryAfterMs: millis(retry),
		Flags: codec.ErrFlagClosing | flags, Reason: reason})
	lp.stats.errors[code].Add(1)
	lp.markClosing(c)
	c.flush()
	lp.closeSocket(c)
}

// permitted checks a REGISTER, SEND or REQUEST of an authenticated user (c.user != 0)
// against the user's permissions in force. A refused frame gets FORBIDDEN with its corr
// (or is dropped and counted when corr is 0); the connection stays open. A malformed
// frame passes: its handler answers BAD_FRAME.
func (lp *loop) permitted(c *conn, f codec.Frame) bool {
	var name []byte
	var err error
	var pats *Patterns
	p := lp.srv.auth.table.Load().permsOf(c.user)
	if p == nil {
		p = &noPermissions
	}
	switch f.Type {
	case codec.TypeSend:
		name, _, err = codec.ParseSend(f.Body)
		pats = &p.Send
	case codec.TypeRequest:
		name, _, _, err = codec.ParseRequest(f.Body)
		pats = &p.Request
	case codec.TypeRegister:
		name, err = codec.ParseName(f.Body)
		pats = &p.Register
	default:
		return true
	}
	if err != nil || pats.Match(name) {
		return true
	}
	lp.refuseFrame(c, f, codec.CodeForbidden, 0, forbiddenReason[f.Type])
	return false
}

var noPermissions Permissions

// forbiddenReason is FORBIDDEN's reason by frame type; static, so refusing allocates
// nothing.
var forbiddenReason = map[codec.Type]string{
	codec.TypeSend:     "user may not SEND to this name",
	codec.TypeRequest:  "user may not REQUEST this name",
	codec.TypeRegister: "user may not REGISTER this name",
}

// writeAuthMetrics writes the authentication and handshake metrics, each with its HELP
// and TYPE.
func (s *Server) writeAuthMetrics(w io.Writer) {
	a := &s.auth
	for _, m := range []struct {
		name, typ, help string
		v               uint64
	}{
		{"switchboard_auth_failures_total", "counter", "HELLOs refused UNAUTHORIZED after a check (bad token, unknown user, bad secret).", a.failures.Load()},
		{"switchboard_auth_throttled_total", "counter", "HELLOs refused UNAUTHORIZED without a check: their address failed too often (auth-failures-per-ip).", a.throttled.Load()},
		{"switchboard_auth_verify_busy_total", "counter", "HELLOs refused BUSY because the credential verifiers' queue was full.", a.busy.Load()},
		{"switchboard_auth_cache_hits_total", "counter", "HELLOs whose secret matched the per-user cache, without a bcrypt check.", a.cacheHits.Load()},
		{"switchboard_auth_verifications_total", "counter", "bcrypt checks run by the credential verifiers.", a.verifications.Load()},
		{"switchboard_auth_failure_addresses", "gauge", "Addresses tracked by the failed-handshake limiter.", uint64(a.failLimit.Len())},
		{"switchboard_auth_verify_queue", "gauge", "HELLOs waiting for a credential verifier.", uint64(len(a.queue))},
		{"switchboard_handshakes", "gauge", "Connections still in their handshake (no WELCOME yet).", uint64(max(0, a.handshaking.Load()))},
		{"switchboard_handshakes_max", "gauge", "The cap on connections in their handshake (max-handshakes).", uint64(a.maxHandshakes)},
	} {
		writeFamily(w, m.name, m.typ, m.help)
		if m.typ == "counter" {
			metrics.WriteCounterUint64(w, m.name, m.v)
		} else {
			metrics.WriteGaugeUint64(w, m.name, m.v)
		}
	}
}
