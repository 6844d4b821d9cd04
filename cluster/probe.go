package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/shard"
)

// Probes: telling a killed node from a live one before its lease expires.
//
// Every node answers requests on its probe subject, switchboard.<cluster>.probe.<id>,
// with the epoch of its run (8 bytes; 0 once it serves no names: fenced, or its lease
// taken by another run). NATS answers a request to a subject nobody subscribes to at
// once with "no responders" (nats.ErrNoResponders): a killed node's subscription went
// with its connection and, embedded, with its server's routes. So a node whose renewal
// is overdue (none seen for overdue()) and whose probe subject has no responders is
// taken for dead: Lookup stops returning its names and Forward refuses it (NO_ROUTE at
// once instead of a TIMEOUT), and a claim of one of its names takes it over (still a
// CAS on the revision read, as after an expired lease).
//
// Only "no responders" counts. A probe that gets no answer in time (the subject has
// interest, but nobody answers: a hung node, a network that drops packets) leaves the
// node alive until its lease expires, as before; such a node fences itself before that
// (fence.go). A probe answered with another epoch than the owner's means a new run of
// the node answers: the owner's run is gone.
//
// Both conditions, because each alone misleads: a live node's renewal can be late
// (a loaded host, a KV leader election), and a live node can have no interest for a
// moment (reconnecting to NATS, a route reconnecting). A node that lost every NATS path
// for longer than a renewal period while staying alive is taken for dead (docs/CLUSTER.md,
// guarantees).

const (
	// probeTimeout bounds one probe. A live node answers in well under a millisecond on
	// a LAN; "no responders" comes back as fast.
	probeTimeout = 500 * time.Millisecond
	// probeEvery is how often probeLoop looks for nodes whose renewal is overdue.
	probeEvery = 250 * time.Millisecond
	// overdueSlack is how much later than LeaseRenew after the last one a renewal must be
	// missing before the node is probed (renewals are not exactly periodic).
	overdueSlack = 500 * time.Millisecond
)

// overdue is how long after the last renewal of a node this node saw it takes the
// next one for missed.
func (d *Directory) overdue() time.Duration { return d.cfg.LeaseRenew + overdueSlack }

// probeSubject is node's probe subject.
func (d *Directory) probeSubject(node uint16) string {
	return subjectPrefix + "." + d.cfg.Name + ".probe." + strconv.Itoa(int(node))
}

// startProbes subscribes to this node's probe subject: called once the node holds its
// lease, so that a second process with this node id (refused by acquireLease) never
// answers.
func (d *Directory) startProbes() error {
	sub, err := d.nc.Subscribe(d.probeSubject(d.cfg.NodeID), d.answerProbe)
	if err != nil {
		return fmt.Errorf("cluster: subscribe %s: %w", d.probeSubject(d.cfg.NodeID), err)
	}
	d.probeSub = sub
	return nil
}

// answerProbe answers a probe with this run's epoch, or 0 when the node serves no names.
// A probe with a body is a release query (releaseQuery): the epoch is followed by one
// byte, the answer (holdAnswer). It runs on the subscription's goroutine.
func (d *Directory) answerProbe(m *nats.Msg) {
	epoch := d.epoch
	if d.fenced.Load() || d.leaseLost.Load() || d.leaseStale() {
		epoch = 0
	}
	reply := binary.BigEndian.AppendUint64(make([]byte, 0, 9), epoch)
	if len(m.Data) > 0 {
		reply = append(reply, byte(d.holds(m.Data)))
	}
	_ = m.Respond(reply)
}

// Release queries: a name whose connection closed is gone from its node's view at once
// (Unregister leaves a tombstone in the cache), but its KV entry stays until the node's
// delete lands, one KV round trip per name on one goroutine: seconds behind when a
// drain closes a thousand connections at once. A client that moved to another node
// (GOAWAY, or a connection it lost) and registered there before that found the entry
// held by a live node and got NAME_TAKEN: 322–844 of a draining node's 1,000 clients lost
// their names that way (docs/BENCHMARKS.md, "A planned drain in a cluster"). So a claim
// that finds the name held by a connection of a live node asks that node, on its probe
// subject, whether the connection still holds it at the revision read. "Let go" is
// answered only on positive knowledge (a tombstone of that owner at that revision, or a
// later one), so that a name the node holds, or a claim of it still in flight there
// (written, not yet in its cache), is never given away; the claim is then a CAS on that
// revision, as every claim is, and the node's delete, a CAS on the same revision, fails
// after it.

// holdAnswer is a release query's answer.
type holdAnswer uint8

const (
	holdHeld    holdAnswer = iota // the owner holds the name (or an older node answered)
	holdLetGo                     // the owner let it go at that revision, or it was removed since
	holdUnknown                   // no such entry here: removed, or changed, since the claim's read
)

// releaseQuery is a release query's body: owner id (8), owner epoch (8), revision (8),
// then the name.
func releaseQuery(name string, o owner, rev uint64) []byte {
	b := make([]byte, 0, 24+len(name))
	b = binary.BigEndian.AppendUint64(b, uint64(o.id))
	b = binary.BigEndian.AppendUint64(b, o.epoch)
	b = binary.BigEndian.AppendUint64(b, rev)
	return append(b, name...)
}

// holds answers a release query (releaseQuery's body) from this node's cache. A malformed
// body, or a node that serves no names, gets holdUnknown.
func (d *Directory) holds(q []byte) holdAnswer {
	if len(q) <= 24 || len(q) > 24+shard.MaxNameLen || d.fenced.Load() || d.leaseLost.Load() || d.leaseStale() {
		return holdUnknown
	}
	o := owner{id: shard.ConnID(binary.BigEndian.Uint64(q)), epoch: binary.BigEndian.Uint64(q[8:])}
	rev := binary.BigEndian.Uint64(q[16:])
	e, ok := d.cache.get(string(q[24:]))
	switch {
	case ok && e.dead && (e.rev > rev || e.rev == rev && e.owner == o):
		return holdLetGo
	case ok && !e.dead && e.owner == o:
		return holdHeld
	}
	return holdUnknown
}

// released asks o's node whether o still holds name at revision rev (holds), for
// probeTimeout at most. An answer from a node that does not know release queries (8
// bytes: the epoch only) is holdHeld, as before release queries; no answer, or one from
// another run than o's, is holdUnknown: that run may have just ended (its lease released
// or not yet seen expired), which the claim's next read tells.
//
// Like a probe, a release query is not sent to a node that left one unanswered in the
// last LeaseRenew (unanswered), and one that goes unanswered starts that quiet period: a
// hung node's clients reconnecting elsewhere would otherwise hold a claim worker for
// probeTimeout each, every time they ask again, and the claims of everyone else would
// wait behind theirs (TestHungOwnerClaimsCheap: 100 claims of a hung node's names took
// 35.6 s, 0.53 s since). A draining node is asked every time, as before: it is leaving
// on purpose, busy rather than hung, and its clients' names are let go one by one.
func (d *Directory) released(ctx context.Context, name string, o owner, rev uint64) holdAnswer {
	if d.unanswered(o.node()) {
		return holdUnknown
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	m, err := d.nc.RequestWithContext(ctx, d.probeSubject(o.node()), releaseQuery(name, o, rev))
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		if l, ok := d.member(o.node()); !ok || !l.draining {
			d.lmu.Lock()
			d.unansweredAt[o.node()] = time.Now()
			d.lmu.Unlock()
		}
		return holdUnknown
	case err != nil || len(m.Data) < 8 || binary.BigEndian.Uint64(m.Data) != o.epoch:
		return holdUnknown
	case len(m.Data) == 8:
		return holdHeld
	case len(m.Data) == 9 && m.Data[8] <= byte(holdUnknown):
		return holdAnswer(m.Data[8])
	}
	return holdHeld
}

// errOwnerUnanswered: a claim met a name whose owner's node did not answer its probe in
// time (or not within the claim's time), and whose lease has not expired yet (nodeGone). It wraps
// shard.ErrUnavailable: the client is told UNAVAILABLE with a retry-after, and gets the
// name once the lease has expired.
var errOwnerUnanswered = fmt.Errorf("%w: the name's owner is on a node that did not answer in time, whose lease has not been seen to expire yet", shard.ErrUnavailable)

// errOwnerDraining is a claim's answer when the name's owner is a connection of a
// draining node that still holds it: that connection is about to close (GOAWAY, then the
// drain's batches), so the client is told UNAVAILABLE and asks again after the
// retry-after, rather than NAME_TAKEN for a name about to be free.
var errOwnerDraining = fmt.Errorf("%w: the name's owner is a connection of a draining node that has not closed yet", shard.ErrUnavailable)

// errChangedSinceRead is ownerLive's answer when the owner's node holds no entry for the
// name at the revision read (it changed since: removed, most likely), or did not answer
// the release query (it may have just left): the claim reads the name again, once, and
// after that answers errOwnerUndecided.
var errChangedSinceRead = errors.New("cluster: the name changed since it was read")

// errLetGo is ownerLive's answer when the owner's node says the owner let the name go at
// the revision read (not an error: the claim may take it by CAS on that revision).
var errLetGo = errors.New("cluster: the owner let the name go")

// errOwnerUndecided: the owner's node, though live by its lease and probe, twice could
// not say whether the owner still holds the name. UNAVAILABLE, asked again, rather than
// NAME_TAKEN: the client would give the name up.
var errOwnerUndecided = fmt.Errorf("%w: the name's owner is on a node that could not say whether it still holds the name", shard.ErrUnavailable)

type probeResult uint8

const (
	probeUnknown      probeResult = iota // no answer in time, or NATS failed: undecided
	probeAnswered                        // a run of the node answered, with its epoch
	probeNoResponders                    // nobody subscribes to the node's probe subject
)

// probe asks node for its epoch, for probeTimeout at most. A node that left a probe
// unanswered is not asked again for LeaseRenew (probeUnknown at once), so that claims of
// a hung node's names do not each wait probeTimeout on a claim worker.
func (d *Directory) probe(ctx context.Context, node uint16) (probeResult, uint64) {
	d.lmu.RLock()
	quiet := time.Since(d.unansweredAt[node]) < d.cfg.LeaseRenew
	d.lmu.RUnlock()
	if quiet {
		// Not asked again so soon — unless nobody subscribes to its probe subject any
		// more (embedded mode: the routes to it closed since), which is the answer the
		// probe would get. A node killed under load takes a while to exit: a client of
		// it that reconnected first found its routes still open and the probe
		// unanswered, and the quiet period that followed delayed the takeover by
		// another ~1.3 s in a 100K-connection run.
		if d.reachable != nil && !d.reachable(d.probeSubject(node)) {
			return probeNoResponders, 0
		}
		return probeUnknown, 0
	}
	d.probes.Add(1)
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	m, err := d.nc.RequestWithContext(ctx, d.probeSubject(node), nil)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return probeNoResponders, 0
	case err == nil && len(m.Data) == 8:
		return probeAnswered, binary.BigEndian.Uint64(m.Data)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		d.lmu.Lock()
		d.unansweredAt[node] = time.Now()
		d.lmu.Unlock()
		// Unanswered — and nobody subscribes to the subject any more: the node was
		// killed, and the probe reached its dying server before the routes to it
		// closed. That is the answer a probe sent now gets. Undecided instead, the claim
		// answered UNAVAILABLE and the client came back only after its retry-after (1 s):
		// in a 100K-connection kill, the median takeover came 0.4 s after the node was
		// marked down.
		if d.reachable != nil && !d.reachable(d.probeSubject(node)) {
			return probeNoResponders, 0
		}
	}
	return probeUnknown, 0
}

// unanswered reports whether node, not draining, left a probe or release query
// unanswered in the last LeaseRenew and still has interest in its probe subject (a node
// whose routes have closed since is asked again: "no responders" is an answer).
func (d *Directory) unanswered(node uint16) bool {
	d.lmu.RLock()
	quiet := time.Since(d.unansweredAt[node]) < d.cfg.LeaseRenew && !d.liveNodes[node].draining
	d.lmu.RUnlock()
	return quiet && (d.reachable == nil || d.reachable(d.probeSubject(node)))
}

// member is node's lease as this node's leases watch shows it.
func (d *Directory) member(node uint16) (lease, bool) {
	d.lmu.RLock()
	defer d.lmu.RUnlock()
	l, ok := d.liveNodes[node]
	return l, ok
}

// Why a node was taken for dead (markDown's log).
const (
	downOverdue = "its lease renewal is overdue and its probe subject has no responders"
	downLink    = "its link closed and its probe was not answered by its run"
)

// markDown marks node's run epoch down unless a renewal arrived since the one seen at
// seen, saying why. It reports whether the node is down now.
func (d *Directory) markDown(node uint16, epoch uint64, seen time.Time, why string) bool {
	d.lmu.Lock()
	l, ok := d.liveNodes[node]
	ok = ok && l.epoch == epoch && l.seen.Equal(seen)
	first := ok && !l.down
	if first {
		l.down, l.downAt = true, time.Now()
		d.liveNodes[node] = l
	}
	d.lmu.Unlock()
	if first {
		d.nodesDown.Add(1)
		d.log.Warn("node taken for dead: "+why+"; its names may be taken over",
			"node_id", node, "epoch", epoch, "last_renewal_seen", time.Since(seen).Round(time.Millisecond))
		d.publishPeers()
	}
	return ok
}

// probeLoop probes, every probeEvery, the other nodes whose renewal is overdue, and marks
// those with no responders down; and, at once when a link is lost (link.go), the nodes
// whose link closed, marking down those whose run does not answer. Nodes that renew on
// time and keep their link are never probed.
func (d *Directory) probeLoop() {
	defer d.wg.Done()
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	type suspect struct {
		node    uint16
		epoch   uint64
		seen    time.Time
		overdue bool
		linked  bool // its link closed
	}
	var suspects []suspect
	for {
		select {
		case <-t.C:
		case <-d.linkWake:
		case <-d.ctx.Done():
			return
		}
		suspects = suspects[:0]
		d.lmu.RLock()
		for node, l := range d.liveNodes {
			if node == d.cfg.NodeID || l.down {
				continue
			}
			e, lost := d.linkLost[node]
			s := suspect{node, l.epoch, l.seen, time.Since(l.seen) > d.overdue(), lost && e == l.epoch}
			if s.overdue || s.linked {
				suspects = append(suspects, s)
			}
		}
		d.lmu.RUnlock()
		for _, s := range suspects {
			r, got := d.probe(d.ctx, s.node)
			switch {
			case s.linked && r != probeAnswered:
				d.markDown(s.node, s.epoch, s.seen, downLink)
			case s.overdue && r == probeNoResponders:
				d.markDown(s.node, s.epoch, s.seen, downOverdue)
			case s.linked && got == s.epoch:
				d.linkAlive(s.node, s.epoch) // its run answered: alive, it links again
			}
		}
	}
}

// nodeGone decides, for a claim, whether node's run epoch, whose lease the leader still
// holds, is gone: down already; a probe answered by another run; or no responders and
// its renewal overdue. With no responders but a renewal seen recently, it waits (within
// ctx) until the renewal is overdue and probes again, so that a client reconnecting to
// this node right after its old node was killed gets its name back instead of
// NAME_TAKEN. The owner is alive (NAME_TAKEN) only on evidence: its run answered the
// probe, or renewed its lease meanwhile.
//
// What it cannot decide — a probe unanswered (a hung node, SIGSTOP or a paused VM; one
// cut off by a network that drops packets; one killed before this node's NATS server saw
// its route close), or ctx ending first — is errOwnerUnanswered: UNAVAILABLE, so that a
// client reconnecting from that node tries again until a probe or the lease decides,
// instead of taking NAME_TAKEN for the name's loss.
func (d *Directory) nodeGone(ctx context.Context, node uint16, epoch uint64) (bool, error) {
	if l, ok := d.member(node); ok && l.epoch == epoch && l.down {
		return true, nil
	}
	for {
		r, got := d.probe(ctx, node)
		if r != probeAnswered && d.linkLostFor(node, epoch) {
			// Its link closed and its run does not answer: its process ended (link.go).
			if l, ok := d.member(node); ok && l.epoch == epoch {
				return l.down || d.markDown(node, epoch, l.seen, downLink), nil
			}
		}
		switch r {
		case probeAnswered:
			if got == epoch {
				d.linkAlive(node, epoch)
			}
			return got != epoch, nil
		case probeUnknown:
			// Unanswered (or NATS failed): a node that is busy, hung, cut off — or
			// killed a moment ago, before the probing node's NATS server saw its route
			// close, so that the probe went where nobody reads. Undecidable here, with
			// the renewal overdue or not: errOwnerUnanswered (UNAVAILABLE, asked again).
			// Taking it for alive answered NAME_TAKEN, and a client that reconnected
			// from a killed node gave its name up: all 50 of a killed node's clients in
			// a 100K-connection run, whose first probe timed out while the rest were
			// answered from that (probe skips a node left unanswered for LeaseRenew).
			return false, errOwnerUnanswered
		}
		l, ok := d.member(node)
		switch {
		case !ok:
			// The watch has not seen this lease, or saw it expire after the leader's
			// read: not judged here; asked again, the leader tells.
			return false, errOwnerUnanswered
		case l.epoch != epoch:
			return true, nil // a new run of the node holds the lease
		case l.down:
			return true, nil
		}
		wait := time.Until(l.seen.Add(d.overdue()))
		if wait <= 0 {
			// Overdue, and no responders: dead, unless a renewal slipped in since.
			return d.markDown(node, epoch, l.seen, downOverdue), nil
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return false, errOwnerUnanswered // undecided within the claim's time
		}
		if n, ok := d.member(node); ok && n.epoch == epoch && !n.seen.Equal(l.seen) {
			return false, nil // renewed meanwhile: alive
		}
	}
}
