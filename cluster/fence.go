package cluster

import (
	"fmt"
	"time"

	"github.com/switchboard/switchboard/shard"
)

// ErrFenced is what claims fail with after this node fenced itself (fenceLoop). It wraps
// shard.ErrUnavailable, so clients are told UNAVAILABLE with a retry-after.
var ErrFenced = fmt.Errorf("%w: this node fenced itself: its lease could not be renewed in time", shard.ErrUnavailable)

// fenceGuard is how long before its lease can expire a node that cannot renew it stops
// serving names: at least a renewal interval, and at least fenceMinGuard.
func (d *Directory) fenceGuard() time.Duration {
	return max(d.cfg.LeaseRenew, fenceMinGuard)
}

const (
	fenceMinGuard = 500 * time.Millisecond
	fenceCheck    = 100 * time.Millisecond // how often fenceLoop looks
)

// fenceLoop fences the node when its lease has not been renewed for LeaseTTL minus
// fenceGuard, counted from when the last successful renewal was sent (the KV counts the
// TTL from when it received it, which is later). From then on the directory serves no
// names: Lookup finds none, Claim fails with ErrFenced, Ready is false, renewals stop and
// the lease is released if NATS still answers, so that once the lease is gone (released,
// or expired at the latest fenceGuard later) other nodes can give this node's names to
// the clients that reconnect to them, and two nodes never serve one name. A fenced
// directory stays fenced: the node must restart (a new epoch), which the OnFence
// callback asks for.
func (d *Directory) fenceLoop() {
	defer d.wg.Done()
	t := time.NewTicker(fenceCheck)
	defer t.Stop()
	limit := d.cfg.LeaseTTL - d.fenceGuard()
	for {
		select {
		case <-t.C:
		case <-d.ctx.Done():
			return
		}
		since := time.Since(time.Unix(0, d.lastRenew.Load()))
		if since < limit || d.leaseLost.Load() {
			continue
		}
		d.fenced.Store(true)
		d.log.Error("node fenced: its lease was not renewed in time; it serves no names from now on and must restart",
			"since_last_renewal", since.Round(time.Millisecond), "lease_ttl", d.cfg.LeaseTTL)
		if fn := d.hooks.fence.Load(); fn != nil {
			(*fn)()
		}
		return
	}
}

// Fenced reports whether the node fenced itself (fenceLoop). Safe for concurrent use.
func (d *Directory) Fenced() bool { return d.fenced.Load() }

// OnFence registers fn to be called once, on a directory goroutine, when the node fences
// itself: it then serves no names, and the process should drain its clients (GOAWAY:
// they reconnect to other nodes and register there) and restart. fn must not block.
func (n *Node) OnFence(fn func()) { n.dir.hooks.fence.Store(&fn) }
