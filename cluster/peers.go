package cluster

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
)

// Status is what a node tells the others about itself at every lease renewal; they use it
// to suggest it to clients (GOAWAY, TRY_OTHER refusals).
type Status struct {
	Addr     string  // the client address to suggest; "" means Config.ClientAddr
	Draining bool    // leaving: not suggested to anyone
	Load     float64 // connections / max-connections, 0..1
	Zone     uint8   // admission zone, 0 GREEN .. 3 RED
}

// peerHooks are the Node's optional callbacks (Node.ReportStatus, Node.OnPeers).
type peerHooks struct {
	status atomic.Pointer[func() Status]
	peers  atomic.Pointer[func([]string)]
	fence  atomic.Pointer[func()] // Node.OnFence
	// renewNow (capacity 1) asks the renewer for a renewal now (StatusChanged).
	renewNow chan struct{}
	mu       sync.Mutex // serializes publishPeers
	last     []string   // guarded by mu: the list last passed to peers
	sent     bool       // guarded by mu: last was passed to the current peers callback
}

// ReportStatus makes every lease renewal carry fn's answer (draining, load, zone), so that
// the other nodes can rank this one. fn is called on the renewal goroutine, once per
// cluster-lease-renew, and must be quick. Without it a node reports itself idle and not
// draining.
func (n *Node) ReportStatus(fn func() Status) {
	n.dir.hooks.status.Store(&fn)
	n.StatusChanged()
}

// StatusChanged asks for a lease renewal now rather than at the next tick, so that the
// other nodes learn at once what ReportStatus's function now says (this node's address
// once it listens; that it started draining). It does not block.
func (n *Node) StatusChanged() {
	select {
	case n.dir.hooks.renewNow <- struct{}{}:
	default:
	}
}

// OnPeers registers fn to receive the client addresses of the other live nodes that are not
// draining and advertise an address, best first: lowest admission zone, then lowest load.
// fn is called at once with the current list and again whenever it changes (from the
// leases watch's goroutine; it must not block). The slice is fn's to keep.
func (n *Node) OnPeers(fn func([]string)) {
	n.dir.hooks.mu.Lock()
	n.dir.hooks.peers.Store(&fn)
	n.dir.hooks.sent = false
	n.dir.hooks.mu.Unlock()
	n.dir.publishPeers()
}

// leaseValue is this node's lease as the next renewal writes it.
func (d *Directory) leaseValue() []byte {
	l := lease{epoch: d.epoch, addr: d.cfg.ClientAddr}
	if fn := d.hooks.status.Load(); fn != nil {
		st := (*fn)()
		l.draining, l.zone = st.Draining, st.Zone
		if st.Addr != "" {
			l.addr = st.Addr
		}
		l.load = uint16(min(max(st.Load, 0), 1) * 10_000)
	}
	return appendLease(nil, l)
}

// peerList ranks the live nodes other than this one for clients to go to.
func (d *Directory) peerList() []string {
	type peer struct {
		node uint16
		l    lease
	}
	var ps []peer
	d.lmu.RLock()
	for node, l := range d.liveNodes {
		if node != d.cfg.NodeID && !l.draining && !l.down && l.addr != "" {
			ps = append(ps, peer{node, l})
		}
	}
	d.lmu.RUnlock()
	slices.SortFunc(ps, func(a, b peer) int {
		return cmp.Or(cmp.Compare(a.l.zone, b.l.zone), cmp.Compare(a.l.load, b.l.load), cmp.Compare(a.node, b.node))
	})
	addrs := make([]string, 0, len(ps))
	for _, p := range ps {
		addrs = append(addrs, p.l.addr)
	}
	return addrs
}

// publishPeers passes the ranked peer list to the OnPeers callback if it changed.
func (d *Directory) publishPeers() {
	h := &d.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	fn := h.peers.Load()
	if fn == nil {
		return
	}
	addrs := d.peerList()
	if h.sent && slices.Equal(h.last, addrs) {
		return
	}
	h.last, h.sent = addrs, true
	(*fn)(slices.Clone(addrs))
}
