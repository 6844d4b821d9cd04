package cluster

import (
	"fmt"
	"time"

	"github.com/switchboard/switchboard/shard"
)

// ErrFenced is what claims fail with after this node fenced itself (fenceLoop). It wraps
// shard.ErrUnavailable, so clients are told UNAVAILABLE with a retry-after.
var ErrFenced = fmt.Errorf("%w: this node fenced itself: its lease could not be renewed in time", shard.ErrUnavailable)

// ErrIsolated is what claims fail with while this node is cut off from most of the other
// nodes (fenceLoop); it wraps shard.ErrUnavailable.
var ErrIsolated = fmt.Errorf("%w: this node is cut off from most other nodes", shard.ErrUnavailable)

// isolatedNow decides whether a node is cut off: its NATS connection is down, or (embedded)
// its server sees the probe subscriptions of fewer than half of the other nodes whose
// leases it last saw (reachable of others; -1: not known, external mode). The other nodes
// take a node whose probe subject has no responders, and whose renewal is overdue, for
// dead (probe.go) and give its names away: the node must have stopped serving them by
// then, and it has, since it looks every fenceCheck and their verdict waits for
// cluster-lease-renew plus 500 ms after its last renewal. A node that lost one peer of
// three still reaches the other and keeps serving.
func isolatedNow(connected bool, reachable, others int) bool {
	if !connected {
		return true
	}
	return reachable >= 0 && others > 0 && 2*reachable < others
}

// checkIsolation updates d.isolated, logging each change. Another node counts as reached
// when this node's embedded server has interest in its probe subject: its own subscription,
// through a route, or through this server when it is a client of it (external mode).
func (d *Directory) checkIsolation() {
	reached, others := -1, 0 // -1: not known (external mode): only the connection counts
	if d.reachable != nil {
		reached = 0
	}
	d.lmu.RLock()
	for id := range d.liveNodes {
		if id == d.cfg.NodeID {
			continue
		}
		others++
		if d.reachable != nil && d.reachable(d.probeSubject(id)) {
			reached++
		}
	}
	d.lmu.RUnlock()
	now := isolatedNow(d.nc.IsConnected(), reached, others)
	if d.isolated.Swap(now) == now {
		return
	}
	if now {
		d.log.Error("node isolated: cut off from most other nodes; it serves no names until it is back (they may be given to other nodes)",
			"nats_connected", d.nc.IsConnected(), "nodes_reached", reached, "other_nodes", others)
	} else {
		d.log.Warn("node no longer isolated; serving names again", "nodes_reached", reached, "other_nodes", others)
	}
}

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
//
// The timer is not what keeps a late node from serving: Lookup, Claim, the claim
// workers, probe answers and the renewer each check leaseStale themselves (see there).
func (d *Directory) fenceLoop() {
	defer d.wg.Done()
	t := time.NewTicker(fenceCheck)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-d.ctx.Done():
			return
		}
		d.checkIsolation()
		if d.leaseLost.Load() {
			return // the renewer fenced the node (lease taken by another run)
		}
		if !d.leaseStale() {
			continue
		}
		d.fence(fenceStale)
		return
	}
}

// Why a node fenced itself, as fence logs it.
const (
	fenceStale = "node fenced: its lease was not renewed in time; it serves no names from now on and must restart"
	fenceLost  = "node fenced: its lease was taken by another run of this node id; it serves no names from now on and must stop (node ids must be unique)"
)

// fence fences the node once (fenceLoop, or the renewer): it logs why, and calls the
// OnFence callback (switchboard serve drains its clients to the other nodes and exits).
func (d *Directory) fence(why string) {
	if !d.fenced.CompareAndSwap(false, true) {
		return
	}
	d.log.Error(why, "node_id", d.cfg.NodeID,
		"since_last_renewal", d.leaseAge().Round(time.Millisecond), "lease_ttl", d.cfg.LeaseTTL)
	if fn := d.hooks.fence.Load(); fn != nil {
		(*fn)()
	}
}

// sinceBase is the time since the directory was made, on the monotonic clock (which
// keeps counting while the process is stopped, and is not moved by wall-clock steps).
// lastRenew is kept on the same scale.
func (d *Directory) sinceBase() int64 { return int64(time.Since(d.base)) }

// leaseAge is how long ago the last successful renewal was sent.
func (d *Directory) leaseAge() time.Duration {
	return time.Duration(d.sinceBase() - d.lastRenew.Load())
}

// leaseStale reports whether the node's lease may be gone or about to go: its last
// successful renewal was sent LeaseTTL minus fenceGuard ago or more. Past that the node
// must serve nothing, whether or not fenceLoop has fenced it yet. The decision paths
// (Lookup and Claim on the event loops, the claim workers, probe answers, the renewer)
// check it themselves rather than trusting the fence timer: a process that was stopped
// (SIGSTOP, a paused VM or container, a long stall) runs whatever was ready when it
// resumes — the event loops read the frames queued in their sockets meanwhile, the
// renewer's ticker fires — in any order, and the fence timer's goroutine may come last.
// Without this a node woken after its lease expired routed the SENDs queued during the
// stop to the owners its cache still showed (connections whose names other nodes had
// since given to the same clients, reconnected there), and could write its expired lease
// again. Cost: one atomic load and one monotonic clock read (no allocation).
func (d *Directory) leaseStale() bool {
	return d.leaseAge() >= d.cfg.LeaseTTL-d.fenceGuard()
}

// Fenced reports whether the node fenced itself (fenceLoop). Safe for concurrent use.
func (d *Directory) Fenced() bool { return d.fenced.Load() }

// Serving reports whether the node may still serve its names: not fenced, not isolated,
// and its lease not stale, the conditions under which Lookup finds them. The server asks
// it before delivering what other nodes forwarded to its connections
// (server.DeliverRemote), so that a node woken after its lease lapsed does not deliver the
// SENDs and REQUESTs queued for it meanwhile, and an isolated node (whose names the
// others may be giving away) delivers no more to them than its own senders reach. Safe
// for concurrent use; two atomic loads and one monotonic clock read.
func (d *Directory) Serving() bool {
	return !d.fenced.Load() && !d.isolated.Load() && !d.leaseStale()
}

// OnFence registers fn to be called once, on a directory goroutine, when the node fences
// itself: it then serves no names, and the process should drain its clients (GOAWAY:
// they reconnect to other nodes and register there) and restart. fn must not block.
func (n *Node) OnFence(fn func()) { n.dir.hooks.fence.Store(&fn) }
