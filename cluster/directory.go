package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/shard"
)

// Directory is the cluster-wide name directory: a shard.Directory whose arbiter is a
// JetStream KV bucket (one key per name; create-if-absent and revision CAS decide every
// ownership), with a local cache fed by a watch so that Lookup stays a memory read, and a
// leases bucket (one key per node, expiring unless renewed) that tells a live owner from
// a dead one.
//
// Claim answers at once from the cache when it can (this node's connection already owns
// the name, or another connection of this node does) and otherwise returns
// shard.ErrPending and decides on one of its worker goroutines (a name of another node
// is decided there too, probing that node: probe.go); Unregister updates the cache at
// once and deletes the KV entry on its own goroutine. No method does network I/O on the
// caller's goroutine, so all of them are safe on event loops.
//
// Create one with Start (through a Node); it is safe for concurrent use.
type Directory struct {
	cfg   Config       // immutable once start has opened the buckets (checkLeaseTTL)
	log   *slog.Logger // immutable after newDirectory
	nc    *nats.Conn   // immutable after newDirectory
	cache *cache

	// Set by start, immutable afterwards.
	names, leases             jetstream.KeyValue
	namesBucket, leasesBucket string
	epoch                     uint64 // this run of the node: every entry it writes carries it

	leaseRev  uint64       // owned by the renew goroutine (start before it runs)
	base      time.Time    // immutable: the origin of lastRenew, on the monotonic clock
	lastRenew atomic.Int64 // when the last successful lease write was sent: ns since base (fence.go)
	leaseLost atomic.Bool  // another run of this node id holds the lease: never ready again
	fenced    atomic.Bool  // the lease was not renewed in time: no names served (fence.go)
	isolated  atomic.Bool  // cut off from most other nodes: no names served meanwhile (fence.go)
	// reachable reports whether the embedded NATS server has interest in a subject (a
	// subscription of its own clients or one routed from another server); nil in external
	// mode. Set before start.
	reachable func(subject string) bool
	synced    atomic.Bool // the names and leases watches have replayed their buckets once
	// getLast is lastMsg on nc: how a claim reads a key from its stream's leader
	// (readLeader). Set by newDirectory; a test may replace it before the first claim.
	getLast func(ctx context.Context, stream, subject string) ([]byte, uint64, msgState, error)

	lmu          sync.RWMutex
	liveNodes    map[uint16]lease     // guarded by lmu; fed by the leases watch, down marked by probes
	unansweredAt map[uint16]time.Time // guarded by lmu: when a probe or release query of the node last went unanswered
	probeSub     *nats.Subscription   // set by start: this node's probe subject (probe.go)
	linkLost     map[uint16]uint64    // guarded by lmu: the run of each node whose link ended by EOF or reset (link.go)
	hooks        peerHooks            // status reported in the lease; live peers passed on (peers.go)

	// Links (link.go); set by startLinks, nil when links are off.
	linkLn    net.Listener
	linkSub   *nats.Subscription
	linkAddr  string
	linkToken [8]byte
	lnmu      sync.Mutex
	linksIn   map[uint16]*linkIn    // guarded by lnmu: the links other nodes opened to this one
	linksNew  map[net.Conn]struct{} // guarded by lnmu: accepted links whose ident is not read yet
	linkWake  chan struct{}         // capacity 1: a link was lost, probe now
	linkDial  chan struct{}         // capacity 1: the leases watch saw a new run, link to it now
	linksOut  atomic.Int64          // links this node holds open to other nodes
	linksLost atomic.Int64          // links of other nodes that ended by EOF or reset
	// hangLinks (tests) leaves this node's links open when it stops, as a hung process's
	// stay open; they are kept in hungLinks (guarded by lnmu) for closeHungLinks.
	hangLinks atomic.Bool
	hungLinks []linkOut

	qmu    sync.RWMutex
	closed bool          // guarded by qmu
	claims chan claimReq // sent to under qmu's read lock, never after closed

	umu    sync.Mutex
	unregs map[string]uint64 // guarded by umu: KV deletes still to do, name → revision
	uwake  chan struct{}     // capacity 1: unregs has work

	dmu      sync.Mutex
	doubts   map[doubtKey]doubt // guarded by dmu: claims to reconcile (doubt.go)
	doubtSeq uint64             // guarded by dmu
	ndoubts  atomic.Int64       // len(doubts), read without dmu on the Claim fast path
	dwake    chan struct{}      // capacity 1: doubts has work
	// holdDoubts keeps reconcile from settling anything while set (tests that need a
	// doubt to stand until they have acted).
	holdDoubts atomic.Bool
	// holdDeletes keeps unregisterLoop from deleting anything while set (tests of a
	// name let go whose delete has not landed yet).
	holdDeletes atomic.Bool
	// deletesTried counts the name deletes flushUnregisters has attempted (for tests).
	deletesTried atomic.Int64

	watchRestarts atomic.Int64
	reconciled    atomic.Int64 // entries of claims reported as failed deleted (doubt.go)
	doubtsDropped atomic.Int64 // doubts dropped over maxDoubts
	probes        atomic.Int64 // probes sent (probe.go)
	nodesDown     atomic.Int64 // runs of other nodes taken for dead by probe
	takeovers     atomic.Int64 // names this node claimed from an owner found gone
	handovers     atomic.Int64 // names claimed from a live node that had let them go (released)
	swept         atomic.Int64 // entries of earlier runs of this node deleted
	sweptGone     atomic.Int64 // entries of other nodes' runs gone for good deleted (gone.go)

	// Claims in batches (batch.go): on once the names stream takes atomic batches
	// (enableStreamOptions); a worker holds one of batchSlots' slots while it writes a
	// batch.
	batchOn atomic.Bool
	// markerTTLOn: the names stream takes message TTLs, and removed names' markers
	// expire (deleteName).
	markerTTLOn atomic.Bool
	// removed: names the names watch saw removed lately, with their markers' revisions
	// (removed.go).
	removed    removedNames
	batchSlots chan struct{}
	// sendBatch is publishBatch; a test may replace it before the first claim.
	sendBatch func(items []batchItem) (uint64, error)
	batchSeq  atomic.Uint64               // numbers this run's batches (their ids)
	batches   [batchOutcomes]atomic.Int64 // batches written, by outcome
	batched   atomic.Int64                // claims decided in committed batches

	// namesDelay and leasesDelay: how stale the watches' updates are when applied.
	namesDelay, leasesDelay durations
	// claimQueued and claimDecided: how long claims wait for a worker, and how long the
	// worker takes to decide them (claimLoop).
	claimQueued, claimDecided durations

	ctx     context.Context // ends when Close begins
	cancel  context.CancelFunc
	release atomic.Bool    // stop asks the renewer to delete the lease as it returns
	renewWG sync.WaitGroup // the lease renewer
	wg      sync.WaitGroup // every other goroutine the directory starts
}

type claimReq struct {
	name string
	id   shard.ConnID
	done shard.ClaimFunc
	at   time.Time // queued (claimQueued)
}

var _ shard.Directory = (*Directory)(nil)

func newDirectory(cfg Config, log *slog.Logger, nc *nats.Conn) *Directory {
	ctx, cancel := context.WithCancel(context.Background())
	d := &Directory{
		cfg:          cfg,
		log:          log,
		nc:           nc,
		cache:        newCache(cfg.NodeID),
		base:         time.Now(),
		liveNodes:    make(map[uint16]lease),
		hooks:        peerHooks{renewNow: make(chan struct{}, 1)},
		unansweredAt: make(map[uint16]time.Time),
		linkLost:     make(map[uint16]uint64),
		linksIn:      make(map[uint16]*linkIn),
		linksNew:     make(map[net.Conn]struct{}),
		linkWake:     make(chan struct{}, 1),
		linkDial:     make(chan struct{}, 1),
		claims:       make(chan claimReq, cfg.ClaimQueue),
		batchSlots:   make(chan struct{}, batchSlots),
		uwake:        make(chan struct{}, 1),
		doubts:       make(map[doubtKey]doubt),
		dwake:        make(chan struct{}, 1),
		ctx:          ctx,
		cancel:       cancel,
		namesBucket:  namesBucketPrefix + cfg.Name,
		leasesBucket: leasesBucketPrefix + cfg.Name,
	}
	d.sendBatch = d.publishBatch
	d.getLast = func(ctx context.Context, stream, subject string) ([]byte, uint64, msgState, error) {
		return lastMsg(ctx, d.nc, stream, subject)
	}
	return d
}

// start opens the buckets, takes this node's lease (ErrNodeIDInUse if a live node holds
// it), starts the watches, renewals and workers, and waits until the names watch has
// replayed the bucket: from then on the directory answers. On error nothing is left
// running but what the caller ends with stop and wait.
func (d *Directory) start(ctx context.Context) error {
	js, err := jetstream.New(d.nc)
	if err != nil {
		return fmt.Errorf("cluster: jetstream: %w", err)
	}
	logOnce := func(bucket string) func(error) {
		return func(err error) { d.log.Info("waiting for JetStream", "bucket", bucket, "err", err) }
	}
	var namesDiffer, leasesDiffer bool
	d.names, namesDiffer, err = openBucket(ctx, js, jetstream.KeyValueConfig{
		Bucket:      d.namesBucket,
		Description: "switchboard name directory: name (base64url) -> owner node, epoch, connection",
		History:     1,
		Replicas:    d.cfg.Replicas,
		Storage:     jetstream.FileStorage,
	}, logOnce(d.namesBucket))
	if err != nil {
		return err
	}
	d.leases, leasesDiffer, err = openBucket(ctx, js, jetstream.KeyValueConfig{
		Bucket:         d.leasesBucket,
		Description:    "switchboard node leases: node-<id> -> epoch, client address; expire unless renewed",
		History:        1,
		Replicas:       d.cfg.Replicas,
		Storage:        jetstream.FileStorage,
		TTL:            d.cfg.LeaseTTL,
		LimitMarkerTTL: d.cfg.LeaseTTL,
	}, logOnce(d.leasesBucket))
	if err != nil {
		return err
	}
	if namesDiffer || leasesDiffer {
		d.checkLeaseTTL(ctx)
	}
	if err := d.acquireLease(ctx); err != nil {
		return err
	}
	if err := d.startProbes(); err != nil {
		return err
	}
	if err := d.startLinks(); err != nil {
		return err
	}
	d.cache.epoch.Store(d.epoch)
	namesSynced, leasesSynced := make(chan struct{}), make(chan struct{})
	// The watches keep the buckets they start with: tests replace d.names (a KV without a
	// leader) after start, for the claim workers only.
	names, leases := d.names, d.leases
	d.goWatch("names", names, func() uint64 { return d.streamLast(names) }, d.applyName, &d.namesDelay, namesSynced)
	d.goWatch("leases", leases, func() uint64 { return d.streamLast(leases) }, d.applyLease, &d.leasesDelay, leasesSynced)
	d.renewWG.Add(1)
	go d.renewLoop()
	d.wg.Add(1)
	go d.enableStreamOptions(js)
	d.wg.Add(4 + d.cfg.ClaimWorkers)
	go d.reconcileLoop()
	go d.fenceLoop()
	go d.probeLoop()
	go d.unregisterLoop()
	for range d.cfg.ClaimWorkers {
		go d.claimLoop()
	}
	// Ready only once both watches have replayed their buckets: the names alone are not
	// enough, for until the leases are known every other node counts as gone, and a
	// lookup of a name one of them holds answers "no route" (Lookup), a node that knows
	// no other node cannot tell that it is cut off from them (isolation), and GOAWAY
	// lists no peer.
	for what, ch := range map[string]chan struct{}{"names": namesSynced, "leases": leasesSynced} {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s watch: %w", what, ctx.Err())
		}
	}
	d.synced.Store(true)
	d.wg.Add(2)
	go d.sweep()
	go d.goneSweepLoop()
	return nil
}

// checkLeaseTTL compares the leases bucket with this node's settings when a bucket was
// found with another configuration: a bucket another node created keeps its own TTL and
// replicas whatever this node asks. The KV expires this
// node's lease by the bucket's TTL, so when that is shorter than LeaseTTL the node takes
// it as its own (and renews at least three times within it), or its fence would come
// after its lease expired and another node could give its names away while it still
// serves them. A longer one only delays the takeover of a dead node; a replica count
// that differs is reported. The bucket existed before this node, so its stream has had
// a leader; still each request is bounded by attemptTimeout (a request that reaches the
// cluster while a stream is new gets no answer at all, and given the whole start-up
// context one once held a node's Start for 60 s), and three unanswered ones are
// reported and the check skipped. Called by start before anything reads d.cfg on
// another goroutine.
func (d *Directory) checkLeaseTTL(ctx context.Context) {
	var st jetstream.KeyValueStatus
	var err error
	for range 3 {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		st, err = d.leases.Status(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		d.log.Warn("could not read the leases bucket's settings; its TTL is not checked against this node's", "err", err)
		return
	}
	if r := st.Config().Replicas; r != 0 && r != d.cfg.Replicas {
		d.log.Warn("the directory's buckets were created with another replica count; the buckets' stands",
			"bucket_replicas", r, "cluster_replicas", d.cfg.Replicas)
	}
	ttl, renew := bucketLease(st.TTL(), d.cfg.LeaseTTL, d.cfg.LeaseRenew)
	switch {
	case ttl < d.cfg.LeaseTTL:
		d.log.Warn("the leases bucket was created with a shorter lease TTL; this node fences by it",
			"bucket_ttl", st.TTL(), "cluster_lease_ttl", d.cfg.LeaseTTL, "lease_renew", renew)
		d.cfg.LeaseTTL, d.cfg.LeaseRenew = ttl, renew
	case st.TTL() != d.cfg.LeaseTTL:
		d.log.Warn("the leases bucket was created with a longer lease TTL; a dead node's names wait for it",
			"bucket_ttl", st.TTL(), "cluster_lease_ttl", d.cfg.LeaseTTL)
	}
}

// bucketLease is the lease TTL and renewal period a node must use with a leases bucket
// whose TTL is bucket, given its own settings: the shorter TTL, renewed at least three
// times within it (Config.Validate's rule). A bucket TTL of 0 (none) changes nothing.
func bucketLease(bucket, ttl, renew time.Duration) (time.Duration, time.Duration) {
	if bucket <= 0 || bucket >= ttl {
		return ttl, renew
	}
	return bucket, min(renew, bucket/3)
}

// Claim implements shard.Directory. It never blocks: a claim the cache cannot answer
// goes to a bounded queue (shard.ErrBusy when full) and is decided on a worker.
func (d *Directory) Claim(name string, id shard.ConnID, done shard.ClaimFunc) error {
	if len(name) == 0 || len(name) > shard.MaxNameLen {
		return shard.ErrBadName
	}
	if id.Node() != d.cfg.NodeID {
		panic("BUG: cluster: Claim for a connection of node " + fmt.Sprint(id.Node()) + " on node " + fmt.Sprint(d.cfg.NodeID))
	}
	if d.fenced.Load() || d.leaseStale() { // fence.go: not even a name this connection holds
		if d.leaseLost.Load() {
			return errClaimLeaseLost
		}
		return ErrFenced
	}
	if e, ok := d.cache.get(name); ok && !e.dead {
		switch {
		case e.id == id && e.epoch == d.epoch:
			if !d.inDoubt(name, e.owner) {
				return nil
			}
			// In doubt: this connection's earlier claim was reported as failed and its
			// entry is to be reconciled away; decided on a worker, whose write makes the
			// entry this claim's (doubt.go).
		case e.node() == d.cfg.NodeID && e.epoch == d.epoch:
			return shard.ErrNameTaken // another connection of this node: authoritative
		}
		// Another node's name is decided on a worker, even when its node's lease looks
		// live: that node may have just been killed, and its clients, reconnecting here,
		// must get their names back (probe.go) rather than NAME_TAKEN from the cache.
	}
	d.qmu.RLock()
	defer d.qmu.RUnlock()
	if d.closed {
		return ErrClosed
	}
	if d.leaseLost.Load() {
		return errClaimLeaseLost
	}
	if d.fenced.Load() {
		return ErrFenced
	}
	if d.isolated.Load() {
		return ErrIsolated
	}
	select {
	case d.claims <- claimReq{name, id, done, time.Now()}:
		return shard.ErrPending
	default:
		return shard.ErrBusy
	}
}

// Unregister implements shard.Directory: the name is gone from this node's view at once,
// and its KV entry is deleted (a CAS on the revision it had) on the directory's goroutine.
func (d *Directory) Unregister(name string, id shard.ConnID) error {
	e, ok := d.cache.get(name)
	switch {
	case !ok || e.dead:
		return shard.ErrNotFound
	case e.id != id || e.epoch != d.epoch:
		return shard.ErrNotOwner
	}
	tomb := e
	tomb.dead = true
	if !d.cache.set(name, tomb) {
		return shard.ErrNotOwner // changed under us: a newer owner
	}
	d.queueDelete(name, e.rev)
	select {
	case d.uwake <- struct{}{}:
	default:
	}
	return nil
}

// Lookup implements shard.Directory: a read of the local cache, without allocation. The
// owner may be a connection of another node (its node is in the ConnID).
//
// An owner of an earlier run of its node is not returned: connection ids restart with a
// run, so its ConnID may name another connection now. That is an entry of this node
// whose epoch is not this run's (a crash left it; the sweep deletes it), or of another
// node whose lease does not carry the entry's epoch (the node restarted or died).
func (d *Directory) Lookup(name []byte) (shard.ConnID, bool) {
	if d.fenced.Load() || d.isolated.Load() || d.leaseStale() {
		return 0, false // fence.go: a fenced or isolated node, or one late to fence, serves no names
	}
	o, ok := d.cache.lookup(name)
	switch {
	case !ok:
		return 0, false
	case o.node() == d.cfg.NodeID:
		return o.id, o.epoch == d.epoch
	}
	return o.id, d.leaseLive(o.node(), o.epoch)
}

// Len implements shard.Directory: the names owned by this node's connections.
func (d *Directory) Len() int { return int(d.cache.local.Load()) }

// Epoch is this run's epoch: every entry this node writes carries it, and a restart gets
// a new one. Safe for concurrent use.
func (d *Directory) Epoch() uint64 { return d.epoch }

// Ready reports whether the directory answers, and if not, why: the names and leases
// watches have replayed their buckets, the node's lease was renewed within half its
// TTL, NATS is connected. Safe for concurrent use.
func (d *Directory) Ready() (bool, string) {
	d.qmu.RLock()
	closed := d.closed
	d.qmu.RUnlock()
	switch {
	case closed:
		return false, "cluster directory closed"
	case d.leaseLost.Load():
		return false, "node lease taken by another run of this node id"
	case d.fenced.Load() || d.leaseStale():
		return false, "node fenced: its lease was not renewed in time; restart it"
	case d.isolated.Load():
		return false, "node isolated: cut off from most other nodes; serving no names until it is back"
	case !d.synced.Load():
		return false, "cluster directory not synchronised yet"
	case !d.nc.IsConnected():
		return false, "not connected to NATS"
	}
	// Half the TTL without a renewal: the lease is in danger, and so is every claim.
	if age := d.leaseAge(); age > d.cfg.LeaseTTL/2 {
		return false, fmt.Sprintf("node lease not renewed for %v", age.Round(time.Millisecond))
	}
	return true, ""
}

// leaseLive reports whether the leases watch shows node alive in epoch, and no probe has
// found that run dead (probe.go). A hint.
func (d *Directory) leaseLive(node uint16, epoch uint64) bool {
	d.lmu.RLock()
	l, ok := d.liveNodes[node]
	d.lmu.RUnlock()
	return ok && l.epoch == epoch && !l.down
}

func (d *Directory) claimLoop() {
	defer d.wg.Done()
	for {
		select {
		case r := <-d.claims:
			if d.batchOn.Load() && len(d.claims) > 0 { // others wait behind it: batch.go
				select {
				case d.batchSlots <- struct{}{}:
					d.claimBatch(r)
					<-d.batchSlots
					continue
				default:
				}
			}
			d.claimOne(r)
		case <-d.ctx.Done():
			return
		}
	}
}

// decide makes id the owner of name if nobody else, living, owns it: the KV decides.
//
// A write that failed without an answer (a timeout) may still have landed. Reported as a
// failure, it would leave the name owned in the KV by a connection the server does not
// think owns it, and nobody would release it. So such a failure is checked with one
// more read from the leader, and a write that landed is reported as the success it was.
// Otherwise (the read failed too, or the write may still be applied later) the claim is
// reported as failed and recorded as a doubt: reconcile (doubt.go) deletes its entry if
// it landed after all.
//
// A claim that failed without such a write — every write it sent was refused by the
// leader or reached none, and a read or a probe went unanswered — is reported as
// UNAVAILABLE at once, with no read-back and no doubt of its own. Every read is bounded
// by the claim read timeout (readLeader), so that one waiting for a bucket without a
// leader gives its claim worker back after that, not after OpTimeout.
func (d *Directory) decide(name string, id shard.ConnID) error {
	if err := d.claimGate(); err != nil {
		return err
	}
	me := owner{id: id, epoch: d.epoch}
	withdrawn := d.claimStarts(name, me)
	return d.decided(name, me, withdrawn, d.tryClaim(name, id))
}

// claimGate is the refusal every claim gets, before any KV operation, while this node
// serves no names (fence.go); nil otherwise.
func (d *Directory) claimGate() error {
	if d.fenced.Load() || d.leaseStale() {
		return ErrFenced
	}
	if d.isolated.Load() {
		return ErrIsolated
	}
	return nil
}

// decided turns err, the outcome of me's writes for name (tryClaim's, or a batch's:
// batch.go), into the claim's answer: a success made while the lease went stale is
// ErrFenced, a write that may have landed is read back, and a failure that leaves a
// doubt (withdrawn: this claim withdrew an earlier one's, claimStarts) records it.
func (d *Directory) decided(name string, me owner, withdrawn bool, err error) error {
	if err == nil && d.leaseStale() {
		// Written, but this node may have been stopped meanwhile and its lease expired:
		// the entry carries an epoch other nodes take for gone, and this node is about
		// to fence. Not an OK to give the client.
		return ErrFenced
	}
	if err == nil {
		return nil
	}
	if d.ctx.Err() == nil && mayHaveLanded(err) {
		rerr := d.readBack(name, me, err)
		if rerr == nil && errors.Is(err, errTakeover) {
			d.takeovers.Add(1) // the takeover's write landed, its answer lost
		}
		return rerr
	}
	if withdrawn {
		// An earlier claim of name by this connection was in doubt, and this one
		// withdrew it as it started; this one fails without a write of its own to
		// read back, so the earlier write, if it landed, is still an entry of a
		// connection the server is told (again) does not own the name. The doubt
		// stands.
		d.doubtClaim(name, me)
	}
	switch {
	case errors.Is(err, shard.ErrNameTaken), errors.Is(err, shard.ErrUnavailable):
		// Taken; the owner's node does not answer (errOwnerUnanswered).
		return err
	case d.ctx.Err() != nil:
		return fmt.Errorf("%w: %w", ErrClosed, err) // closing
	}
	// A leader read unanswered within the claim read timeout, or a write that reached
	// no stream leader (no responders, asked again by nats.go): the bucket is electing
	// a leader, most likely. The client is told UNAVAILABLE and retries after the
	// retry-after, by when the election may be over; a read-back would only wait for the
	// same missing leader.
	return fmt.Errorf("%w: %w", shard.ErrUnavailable, err)
}

// mayHaveLanded reports whether err, tryClaim's, leaves a write of the claim whose
// outcome NATS did not tell: neither a refusal (tryClaim handles those), nor a write
// that reached no stream leader, nor a failure before any such write (a leader read,
// or the owner's node unanswered).
func mayHaveLanded(err error) bool {
	switch {
	case errors.Is(err, shard.ErrNameTaken), errors.Is(err, shard.ErrUnavailable),
		errors.Is(err, errClaimRead), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, errBatchUnsent):
		return false
	}
	return true
}

// readBack decides a claim whose write failed without an answer (werr): one more read
// from the leader, and the claim succeeded if it shows the write; otherwise it is
// reported as UNAVAILABLE and recorded as a doubt (doubt.go).
func (d *Directory) readBack(name string, me owner, werr error) error {
	data, rev, st, rerr := d.readLeader(d.ctx, d.namesBucket, nameKey(name))
	if rerr == nil && st == msgPresent {
		if cur, ok := parseOwner(data); ok && cur == me {
			d.cache.set(name, cached{owner: me, rev: rev})
			return nil
		}
	}
	d.doubtClaim(name, me)
	// NATS did not decide (a timeout, no leader, no connection): the client is told
	// UNAVAILABLE and retries, rather than INTERNAL.
	return fmt.Errorf("%w: %w", shard.ErrUnavailable, werr)
}

// errClaimLeaseLost is what claims fail with once this node's lease was taken by another
// run of its node id: UNAVAILABLE, and another node can decide.
var errClaimLeaseLost = fmt.Errorf("%w: %w", shard.ErrUnavailable, ErrLeaseLost)

// errClaimRead wraps the error of a claim's leader read that failed (readLeader).
var errClaimRead = errors.New("cluster: claim read from the stream leader failed")

// errTakeover wraps the error of a takeover's write that went unanswered, so that the
// claim counts as a takeover (switchboard_cluster_takeovers_total) if decided's read-back
// finds that it landed.
var errTakeover = errors.New("takeover")

// readTimeout bounds each of a claim's leader reads: ClaimReadTimeout, within OpTimeout.
func (d *Directory) readTimeout() time.Duration {
	return min(d.cfg.ClaimReadTimeout, d.cfg.OpTimeout)
}

// readLeader reads key's last message in bucket from the stream's leader (getLast) for
// a claim, for at most readTimeout within ctx; an error wraps errClaimRead. While the
// bucket has no leader (its leader's node killed, the election not over: 4-9 s)
// JetStream answers no such read: the stream's other replicas leave it unanswered, or
// answer "JetStream cluster not available" once they see no leader; so an unanswered
// read fails after readTimeout, not OpTimeout, and gives its claim worker back. A read
// changes nothing; ownership is decided by the CAS that follows.
func (d *Directory) readLeader(ctx context.Context, bucket, key string) ([]byte, uint64, msgState, error) {
	ctx, cancel := context.WithTimeout(ctx, d.readTimeout())
	defer cancel()
	data, rev, st, err := d.getLast(ctx, streamOf(bucket), subjectOf(bucket, key))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%w: %w", errClaimRead, err)
	}
	return data, rev, st, nil
}

func (d *Directory) tryClaim(name string, id shard.ConnID) error {
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.OpTimeout)
	defer cancel()
	key := nameKey(name)
	me := owner{id: id, epoch: d.epoch}
	val := appendOwner(nil, me)
	// A name the cache shows owned by another connection exists in the KV (the cache is
	// a hint, but a right one almost always): read it first rather than trying to create
	// it, which only fails — one KV write fewer for each of a killed node's names its
	// clients claim again.
	e, cachedLive := d.cache.get(name)
	exists := cachedLive && !e.dead && e.owner != me
	if exists && e.node() != d.cfg.NodeID {
		// The cache shows the name held by another node's connection: a run found dead by
		// probe, or a live one whose connection has let it go (release query, probe.go).
		// Either is taken over with a CAS on the revision the cache holds, so that the
		// entry judged is the one replaced — or the CAS fails and the leader's copy
		// decides below. One KV write per name instead of a leader read and a write: a
		// killed node's ~16K clients re-registering at once were held back by the
		// claims' KV round trips (2,200 takeovers a second over five nodes under that
		// load); a drained node's 15,833, asking the owner's node only after a leader
		// read of the name and of its lease and a probe, waited p50 9.5 s for their names
		// (docs/BENCHMARKS.md, "A planned drain in a cluster").
		l, ok := d.member(e.node())
		gone := ok && l.epoch == e.epoch && l.down
		if ok && l.epoch == e.epoch && !gone && d.unanswered(e.node()) && time.Since(l.seen) < d.cfg.LeaseTTL-2*d.cfg.LeaseRenew {
			// A node that answers nothing lately (hung, or cut off), with a renewal seen
			// recently enough that its lease cannot have expired (the watch shows a
			// renewal after it was written): undecided, without the two leader reads
			// that would say so too. This is the claim of each of a hung node's clients
			// that reconnected elsewhere, again every retry-after, until the lease
			// expires. Not an ownership decision: UNAVAILABLE, asked again.
			return errOwnerUnanswered
		}
		if gone || ok && l.epoch == e.epoch && d.released(ctx, name, e.owner, e.rev) == holdLetGo {
			nrev, err := d.names.Update(ctx, key, val, e.rev)
			if err == nil {
				d.cache.set(name, cached{owner: me, rev: nrev})
				if gone {
					d.takeovers.Add(1)
					d.log.Debug("took over a name whose owner is gone", "name", name, "owner", e.id.String(), "owner_epoch", e.epoch)
				} else {
					d.handovers.Add(1)
				}
				return nil
			}
			switch {
			case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists):
			case gone:
				return fmt.Errorf("cluster: claim %q: %w: %w", name, errTakeover, err)
			default:
				return fmt.Errorf("cluster: claim %q: %w", name, err)
			}
		}
	}
	// A name removed lately has a marker: the create expects it (removed.go).
	var createRev uint64
	if !cachedLive {
		createRev, _ = d.removed.rev(name, time.Now())
	}
	reread := false
	for range 4 { // each round lost a race to another claim; after 4, call it taken
		if !exists {
			// Create if absent: a CAS on "no message yet". Not KV Create, which on a key
			// that exists reads it back with a direct get to see whether it was deleted:
			// any replica may answer a direct get, and the one of a stopped node
			// (SIGSTOP) never does, so the claim waited for OpTimeout. The leader read
			// below tells a deleted key from a live one as well.
			rev, err := d.names.Update(ctx, key, val, createRev)
			createRev = 0 // from the second round on, as before: create, then read
			if err == nil {
				d.cache.set(name, cached{owner: me, rev: rev})
				return nil
			}
			if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				return fmt.Errorf("cluster: claim %q: %w", name, err)
			}
		}
		exists = false // from the second round on, as before: create, then read
		// took: the owner was found gone; handed: it is live and has let the name go.
		took, handed := false, false
		data, rev, st, err := d.readLeader(ctx, d.namesBucket, key)
		if err != nil {
			return err
		}
		switch st {
		case msgAbsent:
			continue // removed since: create again
		case msgPresent:
			cur, ok := parseOwner(data)
			if !ok {
				return shard.ErrNameTaken // a value this version does not understand: leave it
			}
			// Already this connection's: it unregistered the name and claims it again
			// before the delete ran. Written again below, so that the delete (a CAS on
			// the old revision) fails instead of removing the new registration.
			if cur != me {
				live, err := d.ownerLive(ctx, name, cur, rev)
				if errors.Is(err, errLetGo) {
					handed, err = true, nil
				}
				if errors.Is(err, errChangedSinceRead) && !reread {
					reread = true
					continue // read it again (once): removed since, most likely
				}
				if err != nil {
					if errors.Is(err, errChangedSinceRead) {
						err = errOwnerUndecided
					}
					return err
				}
				if live {
					d.cache.set(name, cached{owner: cur, rev: rev})
					return shard.ErrNameTaken
				}
				if !handed {
					took = true
					d.log.Debug("taking over a name whose owner is gone", "name", name, "owner", cur.id.String(), "owner_epoch", cur.epoch)
				}
			}
		}
		nrev, err := d.names.Update(ctx, key, val, rev)
		if err == nil {
			d.cache.set(name, cached{owner: me, rev: nrev})
			switch {
			case took:
				d.takeovers.Add(1)
			case handed:
				d.handovers.Add(1)
			}
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			if took {
				return fmt.Errorf("cluster: claim %q: %w: %w", name, errTakeover, err)
			}
			return fmt.Errorf("cluster: claim %q: %w", name, err)
		}
	}
	return shard.ErrNameTaken
}

// ownerLive decides whether owner o of name, the entry at revision rev, still holds it.
// A connection of this run of this node does exactly while the cache (which this node's
// own writes and unregisters update first) says so; an earlier run of this node does
// not; another node's connection does while that node's lease, as its leader sees it,
// carries o's epoch, unless probes find that run gone before its lease expires
// (nodeGone, probe.go), or that node says o let the name go at rev and its delete has not
// landed yet (released, probe.go): then it answers errLetGo.
func (d *Directory) ownerLive(ctx context.Context, name string, o owner, rev uint64) (bool, error) {
	if o.node() == d.cfg.NodeID {
		if o.epoch != d.epoch {
			return false, nil
		}
		e, ok := d.cache.get(name)
		return ok && !e.dead && e.owner == o, nil
	}
	if l, ok := d.member(o.node()); ok && l.epoch == o.epoch && l.down {
		// That run was found dead by probe already (nodeGone would say so first thing):
		// no need to read its lease from the leader — one KV read fewer for each of a
		// killed node's names claimed again.
		return false, nil
	}
	key := leaseKey(o.node())
	data, _, st, err := d.readLeader(ctx, d.leasesBucket, key)
	if err != nil || st != msgPresent {
		return false, err
	}
	l, ok := parseLease(data)
	if !ok || l.epoch != o.epoch {
		return false, nil
	}
	gone, err := d.nodeGone(ctx, o.node(), o.epoch)
	if gone || err != nil {
		return !gone, err
	}
	for i := 0; ; i++ {
		switch d.released(ctx, name, o, rev) {
		case holdLetGo:
			d.log.Debug("claiming a name its owner's node let go", "name", name, "owner", o.id.String(), "rev", rev)
			return false, errLetGo
		case holdUnknown:
			return false, errChangedSinceRead
		}
		if l, ok := d.member(o.node()); !ok || l.epoch != o.epoch || !l.draining {
			return true, nil
		}
		// Held by a connection of a draining node: a client that got GOAWAY and closed
		// before registering here (the Go client does) is usually let go within
		// milliseconds, once that node's loop reads the close; asked again a few times
		// before the client is told to come back after the retry-after (1 s).
		if i == drainAsks {
			return false, errOwnerDraining
		}
		select {
		case <-time.After(drainAskEvery):
		case <-ctx.Done():
			return false, errOwnerDraining
		}
	}
}

// A claim of a name held on a draining node asks that node again drainAsks times,
// drainAskEvery apart, before answering UNAVAILABLE (ownerLive).
const (
	drainAsks     = 3
	drainAskEvery = 50 * time.Millisecond
)

// unregisterLoop deletes the KV entries of unregistered names, each a CAS on the
// revision it had (a claim that took the name over since wins). A delete that fails for
// another reason (NATS unavailable) is retried, so that a name a live node let go does
// not stay owned.
func (d *Directory) unregisterLoop() {
	defer d.wg.Done()
	for {
		select {
		case <-d.uwake:
		case <-d.ctx.Done():
			return
		}
		if d.holdDeletes.Load() {
			continue // a test's: woken again when it lets go
		}
		if !d.flushUnregisters(d.ctx) {
			select { // back off before retrying the failures
			case <-time.After(250 * time.Millisecond):
			case <-d.ctx.Done():
				return
			}
			select {
			case d.uwake <- struct{}{}:
			default:
			}
		}
	}
}

// flushUnregisters does the deletes queued so far. It reports false if some failed
// (they are queued again).
func (d *Directory) flushUnregisters(ctx context.Context) bool {
	d.umu.Lock()
	batch := d.unregs
	d.unregs = nil
	d.umu.Unlock()
	failed := 0
	for name, rev := range batch {
		octx, cancel := context.WithTimeout(ctx, d.cfg.OpTimeout)
		err := d.deleteName(octx, nameKey(name), rev)
		cancel()
		d.deletesTried.Add(1)
		if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			d.queueDelete(name, rev) // again, unless a later delete of name was queued meanwhile
			failed++
		}
	}
	if failed == 0 {
		return true
	}
	d.log.Warn("name deletes failed; retrying", "count", failed)
	return false
}

// deleteName removes key's entry from the names bucket if it is still at revision rev
// (a CAS): an error matching jetstream.ErrKeyRevisionMismatch when it is not.
//
// The KV leaves a marker where it removes a key, and with a plain delete the marker
// stays for good: every name ever registered and let go stayed in the names stream, in
// the memory and on the disk of every JetStream node — without bound, for clients that
// register names of their own making (a session's id) — and a later claim of it paid a
// create refused by the marker, a read and a CAS. So once the stream takes message TTLs
// (enableStreamOptions), the key is purged with a marker that expires after
// nameMarkerTTL: the stream then holds only the names held, and those let go within
// that time.
func (d *Directory) deleteName(ctx context.Context, key string, rev uint64) error {
	if d.markerTTLOn.Load() {
		ttl := d.cfg.markerTTL
		if ttl == 0 {
			ttl = nameMarkerTTL
		}
		return d.names.Purge(ctx, key, jetstream.LastRevision(rev), jetstream.PurgeTTL(ttl))
	}
	return d.names.Delete(ctx, key, jetstream.LastRevision(rev))
}

// nameMarkerTTL is how long the marker of a removed name stays in the names stream
// (deleteName). The marker tells the nodes' watches that the name was removed; a watch
// resumed past a marker that expired meanwhile would miss the removal, and a watch is
// resumed within two lease renewals of stalling (watch.go), or its node fences and
// leaves (LeaseTTL). A minute is far longer than both, and bounds the markers to the
// names let go in the last minute.
const nameMarkerTTL = time.Minute

// queueDelete queues the KV delete of name at revision rev (a CAS on it). The queue holds
// one delete per name, the latest: an earlier one for the same name could only fail its
// CAS (the name was registered again since, at a later revision), so a client that
// registers and unregisters one name over and over adds nothing to it, and it holds at
// most one entry per name this node owned.
func (d *Directory) queueDelete(name string, rev uint64) {
	d.umu.Lock()
	if d.unregs == nil {
		d.unregs = make(map[string]uint64)
	}
	if rev > d.unregs[name] {
		d.unregs[name] = rev
	}
	d.umu.Unlock()
}

// sweep deletes the entries earlier runs of this node left (a crash leaves them; the
// names watch has replayed the bucket when sweep runs). Each delete is a CAS, so a name
// taken over meanwhile is left alone.
func (d *Directory) sweep() {
	defer d.wg.Done()
	var n int64
	d.cache.each(func(name string, e cached) {
		if e.node() != d.cfg.NodeID || e.epoch == d.epoch || d.ctx.Err() != nil {
			return
		}
		ctx, cancel := context.WithTimeout(d.ctx, d.cfg.OpTimeout)
		err := d.deleteName(ctx, nameKey(name), e.rev)
		cancel()
		if err == nil {
			n++
		} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			d.log.Warn("sweeping a name of an earlier run failed", "name", name, "err", err)
		}
	})
	d.swept.Add(n)
	if n > 0 {
		d.log.Info("swept names of earlier runs of this node", "count", n)
	}
}

// stop begins stopping the directory: claims are refused from now on, the unregisters
// queued are flushed until ctx ends, the goroutines are told to stop, and the lease
// renewer has returned (with release, having deleted the node's lease, so that other
// nodes may take its remaining names over at once). The other goroutines may still be
// finishing NATS calls: close the connection, then call wait.
func (d *Directory) stop(ctx context.Context, release bool) error {
	d.qmu.Lock()
	already := d.closed
	d.closed = true
	d.qmu.Unlock()
	if already {
		return nil
	}
	var err error
	if release && d.names != nil && !d.flushUnregisters(ctx) {
		err = errors.New("cluster: some name deletes did not complete")
	}
	if d.probeSub != nil {
		_ = d.probeSub.Unsubscribe() // leaving: probes get no responders from now on
	}
	d.release.Store(release)
	d.cancel()
	d.stopLinks()
	d.renewWG.Wait()
	return err
}

// wait waits for the directory's goroutines (after stop, and after the NATS connection
// closed, so that none is left waiting on the network) and answers the claims still
// queued with ErrClosed.
func (d *Directory) wait() {
	d.wg.Wait()
	for { // nobody sends after closed: answer what is left
		select {
		case r := <-d.claims:
			r.done(r.name, r.id, ErrClosed)
			continue
		default:
		}
		break
	}
}
