package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/shard"
)

// Claims in batches.
//
// A killed node's ~16K clients reconnecting to the survivors claim their names again
// within seconds, and each claim was one KV write of its own: a request to the names
// stream's leader, a raft proposal, an acknowledgement. Under that storm the KV's write
// rate was the bound (docs/BENCHMARKS.md, "How stale the directory watch is"). Measured
// in one process (three embedded nodes, TestTakeoverManyTime with 4,000 names), a
// takeover written alone cost 154 µs of CPU, one written in batches of up to 64 58 µs.
//
// So while claims wait in the queue, a worker holding one of batchSlots takes up to
// ClaimBatch of them and writes their first attempts in one JetStream atomic batch (the
// names stream allows it: enableBatches): every message carries its own
// Nats-Expected-Last-Subject-Sequence, the revision the claim would CAS on alone (0 for a
// name the cache does not know, the cached revision for a name of a run found dead), and
// either all land, in consecutive sequences, or none does. A batch refused (one CAS
// failed: the cache was behind) is split in halves, down to single claims, which decide
// as they always did (tryClaim). A batch whose commit went unanswered may have landed:
// its claims are read back (readBack) as a single write's are. Claims that need a read
// or a probe before any write (a name the cache does not show held by another node's
// run, a tombstone, a doubt) are not batched.
//
// Nor would handovers be, one by one: a drained node's clients re-register elsewhere
// before its deletes land, and each claim found the name held by a connection of a live
// node that had let it go (probe.go, release queries). So claims the cache shows held by
// a connection of another live node are gathered too, their release queries sent all at
// once, and those the owner's node says it let go at the cached revision join the batch
// with a CAS on that revision; the rest are decided alone after it, as before.
//
// A claim waits for no batch: a worker batches only claims already queued behind the
// one it took, so a lone REGISTER is decided alone as before.

// batchSlots is how many batches one node writes at once. JetStream refuses an atomic
// batch past 50 open on one stream (nats-server's default): five nodes at 4 each stay
// below it, and a refused batch is split into single claims anyway.
const batchSlots = 4

// batchItem is one claim in a batch.
type batchItem struct {
	r         claimReq
	me        owner
	key       string
	rev       uint64 // the revision the write expects (0: no message yet; a marker's: removed.go)
	takeover  bool   // rev is the entry of a run found dead
	handover  bool   // rev is the entry of a live node's connection that let the name go
	holder    owner  // batchAsk: the owner the cache shows, whose node is asked (release query)
	withdrawn bool   // claimStarts withdrew an earlier doubt of this claim
	err       error  // the outcome, once decided
}

// enableStreamOptions turns on what the names stream needs beyond a KV bucket's
// defaults: atomic batches (batching on once it takes them; not asked for when
// ClaimBatch is 1), and per-message TTLs, so that a removed name's marker expires
// (deleteName). A server that does not know an option (an external cluster older than
// 2.12 for batches, 2.11 for TTLs) leaves it off: claims are then written one by one,
// and names removed with markers that stay, as before. It runs on its own goroutine: on a
// fresh cluster the stream has just been created, and its leader (which answers the
// update) may be seconds away or being elected, so a failed attempt is tried again
// every second, for up to enableTries; claims and deletes meanwhile go as without.
func (d *Directory) enableStreamOptions(js jetstream.JetStream) {
	defer d.wg.Done()
	batches := d.cfg.ClaimBatch > 1
	for try := 1; ; try++ {
		cfg, err := d.tryEnableOptions(js, batches)
		if err == nil || try == enableTries {
			d.batchOn.Store(batches && cfg.AllowAtomicPublish)
			d.markerTTLOn.Store(cfg.AllowMsgTTL)
			d.log.Debug("names stream options", "stream", streamOf(d.namesBucket), "tries", try, "err", err,
				"atomic_batches", cfg.AllowAtomicPublish, "message_ttl", cfg.AllowMsgTTL)
			if batches && !cfg.AllowAtomicPublish {
				d.log.Info("claims are written one by one: the names stream takes no atomic batches",
					"stream", streamOf(d.namesBucket), "tries", try, "err", err)
			}
			if !cfg.AllowMsgTTL {
				d.log.Info("removed names leave markers that do not expire: the names stream takes no message TTLs",
					"stream", streamOf(d.namesBucket), "tries", try, "err", err)
			}
			return
		}
		select {
		case <-d.ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// enableTries bounds enableStreamOptions' attempts, a second apart.
const enableTries = 120

// tryEnableOptions makes one attempt for enableStreamOptions: the names stream's
// configuration after it (a zero one on an error).
func (d *Directory) tryEnableOptions(js jetstream.JetStream, batches bool) (jetstream.StreamConfig, error) {
	ctx, cancel := context.WithTimeout(d.ctx, attemptTimeout)
	defer cancel()
	s, err := js.Stream(ctx, streamOf(d.namesBucket))
	if err != nil {
		return jetstream.StreamConfig{}, err
	}
	if cfg := s.CachedInfo().Config; batches && !cfg.AllowAtomicPublish || !cfg.AllowMsgTTL {
		cfg.AllowAtomicPublish = cfg.AllowAtomicPublish || batches
		cfg.AllowMsgTTL = true
		if s, err = js.UpdateStream(ctx, cfg); err != nil {
			return jetstream.StreamConfig{}, err
		}
	}
	return s.CachedInfo().Config, nil
}

// claimOne decides r alone.
func (d *Directory) claimOne(r claimReq) {
	start := time.Now()
	d.claimQueued.observe(r.at, start)
	err := d.decide(r.name, r.id)
	d.claimDecided.observe(start, time.Now())
	r.done(r.name, r.id, err)
}

// claimBatch decides r and the claims queued behind it (up to ClaimBatch), those that
// can be, in batches. It stops taking claims at the first one that cannot be batched,
// which it decides alone after the batch, with the handovers its owner's node did not
// confirm.
func (d *Directory) claimBatch(r claimReq) {
	start := time.Now()
	items := make([]batchItem, 0, d.cfg.ClaimBatch)
	var asks []batchItem
	keys := make(map[string]struct{}, d.cfg.ClaimBatch)
	var single *claimReq
	take := func(r claimReq) {
		d.claimQueued.observe(r.at, time.Now())
		it, how := d.batchable(r)
		if _, dup := keys[it.key]; how == batchNot || dup {
			single = &r
			return
		}
		keys[it.key] = struct{}{}
		if how == batchAsk {
			asks = append(asks, it)
			return
		}
		items = append(items, it)
	}
	take(r)
gather:
	for single == nil && len(items)+len(asks) < d.cfg.ClaimBatch {
		select {
		case r := <-d.claims:
			take(r)
		default:
			break gather
		}
	}
	var alone []claimReq
	if len(asks) > 0 {
		handed, held := d.askReleases(asks)
		items = append(items, handed...)
		alone = held
	}
	if len(items) > 0 {
		d.writeBatch(items)
		end := time.Now()
		for i := range items {
			it := &items[i]
			d.claimDecided.observe(start, end)
			it.r.done(it.r.name, it.r.id, it.err)
		}
	}
	if single != nil {
		alone = append(alone, *single)
	}
	for _, r := range alone {
		d.claimOne(r)
	}
}

// askReleases sends the release queries of asks all at once and waits for their
// answers: the claims whose owner's node says it let the name go at the cached revision
// are returned as handovers to batch, the others (held, unknown, unanswered) to be
// decided alone, as tryClaim decides them.
func (d *Directory) askReleases(asks []batchItem) (handed []batchItem, alone []claimReq) {
	answers := make([]holdAnswer, len(asks))
	var wg sync.WaitGroup
	for i := range asks {
		wg.Go(func() {
			answers[i] = d.released(d.ctx, asks[i].r.name, asks[i].holder, asks[i].rev)
		})
	}
	wg.Wait()
	for i, it := range asks {
		if answers[i] != holdLetGo {
			alone = append(alone, it.r)
			continue
		}
		it.handover = true
		handed = append(handed, it)
	}
	return handed, alone
}

// How a claim can go into a batch (batchable).
const (
	batchNot = iota // decided alone
	batchNow        // written in the batch as it is
	batchAsk        // a handover, if the owner's node says it let the name go
)

// batchable tells whether r can go into a batch, and with which write: a name the cache
// does not know (created: revision 0, or its marker's if it was removed lately), or one
// the cache shows held by a run of another node found dead (taken over on the cached
// revision), by a claim with no doubt to settle; or, once its owner's node says it let
// the name go, one the cache shows held by a connection of another live node (batchAsk:
// handed over on the cached revision).
// Anything else needs a read before its write and is decided alone.
func (d *Directory) batchable(r claimReq) (batchItem, int) {
	it := batchItem{r: r, me: owner{id: r.id, epoch: d.epoch}, key: nameKey(r.name)}
	if d.claimGate() != nil || d.inDoubt(r.name, it.me) {
		return it, batchNot
	}
	e, ok := d.cache.get(r.name)
	if !ok {
		it.rev, _ = d.removed.rev(r.name, time.Now()) // its marker, if removed lately
		return it, batchNow
	}
	if e.dead || e.owner == it.me || e.node() == d.cfg.NodeID {
		return it, batchNot
	}
	l, ok := d.member(e.node())
	switch {
	case !ok || l.epoch != e.epoch:
		return it, batchNot
	case l.down:
		it.rev, it.takeover = e.rev, true
		return it, batchNow
	}
	it.rev, it.holder = e.rev, e.owner
	return it, batchAsk
}

// writeBatch decides items: one atomic batch, split in halves while refused.
func (d *Directory) writeBatch(items []batchItem) {
	for i := range items {
		items[i].withdrawn = d.claimStarts(items[i].r.name, items[i].me)
	}
	d.writeSplit(items)
}

func (d *Directory) writeSplit(items []batchItem) {
	if len(items) == 1 {
		it := &items[0]
		it.err = d.decided(it.r.name, it.me, it.withdrawn, d.tryClaim(it.r.name, it.r.id))
		return
	}
	last, err := d.sendBatch(items)
	var refused *batchRefusal
	switch {
	case err == nil:
		d.batches[batchCommitted].Add(1)
		d.batched.Add(int64(len(items)))
		first := last - uint64(len(items)) + 1
		for i := range items {
			it := &items[i]
			d.cache.set(it.r.name, cached{owner: it.me, rev: first + uint64(i)})
			switch {
			case it.takeover:
				d.takeovers.Add(1)
			case it.handover:
				d.handovers.Add(1)
			}
			it.err = d.decided(it.r.name, it.me, it.withdrawn, nil)
		}
	case errors.As(err, &refused):
		d.batches[batchRefused].Add(1)
		if refused.split() {
			h := len(items) / 2
			d.writeSplit(items[:h])
			d.writeSplit(items[h:])
			return
		}
		for i := range items { // the batch itself was refused: each alone
			d.writeSplit(items[i : i+1])
		}
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, errBatchUnsent):
		// No stream leader to take it, or the commit was never sent: nothing landed,
		// as a single write that met no responders.
		d.batches[batchUnanswered].Add(1)
		for i := range items {
			it := &items[i]
			it.err = d.decided(it.r.name, it.me, it.withdrawn, err)
		}
	default:
		// Unanswered: the batch may have landed, all of it or none. The first claim's
		// entry tells which; while it shows the batch landed, each is read back, and
		// once a read fails or shows it did not, the rest are doubts (readBack's
		// outcome) without more reads, each of which would wait for the same leader.
		d.batches[batchUnanswered].Add(1)
		landed := true
		for i := range items {
			it := &items[i]
			if landed || d.ctx.Err() != nil { // closing: each answered as it is alone
				werr := err
				if it.takeover {
					werr = fmt.Errorf("%w: %w", errTakeover, err)
				}
				it.err = d.decided(it.r.name, it.me, it.withdrawn, werr)
				landed = it.err == nil
				continue
			}
			d.doubtClaim(it.r.name, it.me)
			it.err = fmt.Errorf("%w: %w", shard.ErrUnavailable, err)
		}
	}
}

// Outcomes of batches (switchboard_cluster_claim_batches_total).
const (
	batchCommitted = iota
	batchRefused
	batchUnanswered
	batchOutcomes
)

var batchOutcomeNames = [batchOutcomes]string{"committed", "refused", "unanswered"}

// errBatchUnsent wraps the error of a batch message that could not be sent: its commit
// was not sent either, so nothing of the batch landed.
var errBatchUnsent = errors.New("cluster: claim batch not sent")

// batchRefusal is the stream leader's refusal of a batch.
type batchRefusal struct {
	code int    // JetStream's err_code
	desc string // its description
}

func (e *batchRefusal) Error() string {
	return fmt.Sprintf("cluster: claim batch refused: %s (code %d)", e.desc, e.code)
}

// split reports whether halves of the batch may be taken where the whole was not: it
// was refused for one of its messages (a CAS that failed), not for being a batch.
func (e *batchRefusal) split() bool {
	switch e.code {
	case 10174, // atomic publish is disabled
		10199, // the batch is too large
		10210: // too many batches open on the stream
		return false
	}
	return true
}

// publishBatch writes items' claims as one atomic batch and returns the stream sequence
// of its last message (the batch's messages take consecutive sequences); a
// *batchRefusal when the stream leader refused it, jetstream.ErrNoStreamResponse when no
// leader answered at once, another error when the commit went unanswered.
func (d *Directory) publishBatch(items []batchItem) (uint64, error) {
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.OpTimeout)
	defer cancel()
	id := "c" + strconv.FormatUint(uint64(d.cfg.NodeID), 10) + "-" + strconv.FormatUint(d.epoch, 36) +
		"-" + strconv.FormatUint(d.batchSeq.Add(1), 36)
	for i := range items {
		it := &items[i]
		m := nats.NewMsg(subjectOf(d.namesBucket, it.key))
		m.Data = appendOwner(nil, it.me)
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(it.rev, 10))
		if i < len(items)-1 {
			// Unacknowledged: the commit's answer covers the batch, and a message
			// lost on the way makes the leader refuse the commit as incomplete.
			if err := d.nc.PublishMsg(m); err != nil {
				return 0, fmt.Errorf("%w: %w", errBatchUnsent, err)
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		resp, err := d.nc.RequestMsgWithContext(ctx, m)
		if errors.Is(err, nats.ErrNoResponders) {
			return 0, fmt.Errorf("cluster: claim batch: %w", jetstream.ErrNoStreamResponse)
		}
		if err != nil {
			return 0, fmt.Errorf("cluster: claim batch: %w", err)
		}
		var ack struct {
			Seq   uint64 `json:"seq"`
			Count int    `json:"count"`
			Error *struct {
				ErrCode     int    `json:"err_code"`
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return 0, fmt.Errorf("cluster: claim batch: bad answer %q: %w", resp.Data, err)
		}
		if ack.Error != nil {
			return 0, &batchRefusal{code: ack.Error.ErrCode, desc: ack.Error.Description}
		}
		if ack.Count != len(items) || ack.Seq < uint64(len(items)) {
			// Not an answer to this batch as sent: trust none of it, read it back.
			return 0, fmt.Errorf("cluster: claim batch of %d answered with count %d, seq %d", len(items), ack.Count, ack.Seq)
		}
		return ack.Seq, nil
	}
	panic("BUG: cluster: empty claim batch")
}
