package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/shard"
)

// leaderlessRead is a leader read while the stream has no leader (its leader's node
// killed, the election not over): JetStream answers no $JS.API.STREAM.MSG.GET meanwhile,
// so the request ends only with its context, as lastMsg's does then.
func leaderlessRead(ctx context.Context, _, subject string) ([]byte, uint64, msgState, error) {
	<-ctx.Done()
	return nil, 0, 0, fmt.Errorf("cluster: get %s: %w", subject, ctx.Err())
}

// nodeNineName writes name into d's names bucket as held by a connection of node 9 (run
// 77), which holds no lease in these tests, and waits until d's cache shows it.
func nodeNineName(t *testing.T, d *Directory, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.names.Create(ctx, nameKey(name), appendOwner(nil, owner{id: conn(9, 5), epoch: 77})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the name in the cache", 5*time.Second, func() bool {
		e, ok := d.cache.get(name)
		return ok && !e.dead
	})
}

// claimWithin claims name for id on d and returns how long it took and its outcome; it
// fails the test when no outcome comes within bound.
func claimWithin(t *testing.T, d *Directory, name string, id shard.ConnID, bound time.Duration) (time.Duration, error) {
	t.Helper()
	ch := make(chan error, 1)
	start := time.Now()
	err := d.Claim(name, id, func(_ string, _ shard.ConnID, err error) { ch <- err })
	if !errors.Is(err, shard.ErrPending) {
		return time.Since(start), err
	}
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case err := <-ch:
		return time.Since(start), err
	case <-timer.C:
		t.Fatalf("claim of %q unanswered after %v (op timeout %v)", name, bound, d.cfg.OpTimeout)
		return 0, nil
	}
}

// TestClaimReadWithoutLeader: a claim whose leader read goes unanswered (the names
// bucket has no leader) answers UNAVAILABLE once the claim read timeout has passed, not
// the op timeout, and records no doubt: it wrote nothing that could land. This is the
// takeover claim of a killed names-bucket leader's clients that arrive before their node
// is marked down (the cache shows the name, so the claim reads it first): each waited the
// op timeout (5 s) on the read and as long again on a read-back, holding a claim worker.
func TestClaimReadWithoutLeader(t *testing.T) {
	const opTimeout = 30 * time.Second // far above the bound: which timeout ended the wait is plain
	d := startOneWith(t, func(c *Config) { c.OpTimeout = opTimeout }).Directory()
	// A name of another node (9, not marked down): a claim of it reads it from the leader.
	nodeNineName(t, d, "read-name")
	// Set before the claim; the claim worker reads it after the claim's channel send.
	d.getLast = leaderlessRead
	bound := d.readTimeout() + 1500*time.Millisecond // generous for a loaded 2-core machine
	took, err := claimWithin(t, d, "read-name", conn(1, 7), bound)
	if !errors.Is(err, shard.ErrUnavailable) {
		t.Fatalf("claim with an unanswered leader read = %v; want UNAVAILABLE", err)
	}
	t.Logf("UNAVAILABLE after %v (claim read timeout %v, op timeout %v)", took.Round(time.Millisecond), d.readTimeout(), opTimeout)
	if n := d.doubtCount(); n != 0 {
		t.Errorf("claims in doubt = %d; want 0: a claim that wrote nothing cannot have landed", n)
	}
}

// TestClaimFailureKeepsDoubt: a connection's claim whose outcome NATS did not tell is in
// doubt; the same connection's next claim of the name withdraws that doubt as it starts.
// When that claim fails without writing anything (a leader read unanswered, a write that
// reached no leader), the earlier write may still have landed, and the server has been
// told twice that the connection does not own the name: the doubt must stand, so that
// reconcile deletes the entry, which it does here.
func TestClaimFailureKeepsDoubt(t *testing.T) {
	for _, tt := range []struct {
		name       string
		leaderless func(d *Directory)
	}{
		{"leader read unanswered", func(d *Directory) { d.getLast = leaderlessRead }},
		{"write without a leader", func(d *Directory) { d.names = noLeaderKV{d.names} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := startOne(t).Directory()
			me := owner{id: conn(1, 3), epoch: d.epoch}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// The earlier claim's write landed; the server was told it failed.
			if _, err := d.names.Create(ctx, nameKey("doubted"), appendOwner(nil, me)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the entry in the cache", 5*time.Second, func() bool {
				e, ok := d.cache.get("doubted")
				return ok && !e.dead && e.owner == me
			})
			d.holdDoubts.Store(true)
			d.doubtClaim("doubted", me)
			// Set before the claim (nothing else reads either while the doubt is held);
			// the claim worker reads them after the claim's channel send.
			tt.leaderless(d)
			_, err := claimWithin(t, d, "doubted", me.id, d.readTimeout()+1500*time.Millisecond)
			if !errors.Is(err, shard.ErrUnavailable) {
				t.Fatalf("claim = %v; want UNAVAILABLE", err)
			}
			if n := d.doubtCount(); n != 1 {
				t.Fatalf("claims in doubt = %d; want 1: the earlier claim's entry would stay owned by a connection told it does not own it", n)
			}
			d.holdDoubts.Store(false)
			waitFor(t, "reconcile to delete the earlier claim's entry", 10*time.Second, func() bool {
				_, ok := entryOf(t, d, "doubted")
				return !ok
			})
		})
	}
}

// answerLostKV applies every Update and then answers it as NATS does when the answer is
// lost on the way (a timeout): the write landed, the claim was not told.
type answerLostKV struct{ jetstream.KeyValue }

func (kv answerLostKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if _, err := kv.KeyValue.Update(ctx, key, value, rev); err != nil {
		return 0, err
	}
	return 0, context.DeadlineExceeded
}

// TestTakeoverAnswerLost: a takeover whose write landed but whose answer was lost is
// decided by the read-back as the claim's success, and counted as the takeover it was
// (switchboard_cluster_takeovers_total); a create whose answer was lost is not.
func TestTakeoverAnswerLost(t *testing.T) {
	d := startOne(t).Directory()
	// Held by a connection of node 9, which holds no lease: gone, so the claim takes it
	// over after a leader read.
	nodeNineName(t, d, "lost-answer")
	// Set before the claims; the claim worker reads it after each claim's channel send.
	d.names = answerLostKV{d.names}
	takeovers := d.takeovers.Load()
	if err := claim(t, d, "lost-answer", conn(1, 7)); err != nil {
		t.Fatalf("takeover whose answer was lost = %v; want OK (read back)", err)
	}
	if n := d.takeovers.Load() - takeovers; n != 1 {
		t.Errorf("%d takeovers counted; want 1", n)
	}
	if err := claim(t, d, "lost-answer-new", conn(1, 8)); err != nil {
		t.Fatalf("create whose answer was lost = %v; want OK (read back)", err)
	}
	if n := d.takeovers.Load() - takeovers; n != 1 {
		t.Errorf("%d takeovers counted after a create; want still 1", n)
	}
	checkEntries(t, d, []string{"lost-answer", "lost-answer-new"},
		[]owner{{id: conn(1, 7), epoch: d.epoch}, {id: conn(1, 8), epoch: d.epoch}})
}
