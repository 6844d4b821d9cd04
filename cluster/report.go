package cluster

import (
	"cmp"
	"fmt"
	"io"
	"slices"
)

// Report is what the admin endpoint /cluster shows of this node's view of the cluster.
type Report struct {
	Mode        string         `json:"mode"`
	Name        string         `json:"cluster_name"`
	NodeID      uint16         `json:"node_id"`
	Epoch       uint64         `json:"epoch"`
	Ready       bool           `json:"ready"`
	NotReadyWhy string         `json:"not_ready_why,omitempty"`
	Fenced      bool           `json:"fenced"`
	LeaseAgeMs  int64          `json:"lease_age_ms"` // since the last successful renewal was sent
	LeaseTTLMs  int64          `json:"lease_ttl_ms"`
	LocalNames  int            `json:"local_names"` // owned by this node's connections
	Nodes       []NodeReport   `json:"nodes"`       // every node with a live lease, this one included
	Forwarding  ForwarderStats `json:"forwarding"`
	Queued      int            `json:"forward_queued"`
}

// NodeReport is one node as its lease describes it.
type NodeReport struct {
	ID       uint16  `json:"id"`
	Self     bool    `json:"self,omitempty"`
	Addr     string  `json:"addr"`
	Epoch    uint64  `json:"epoch"`
	Draining bool    `json:"draining"`
	Load     float64 `json:"load"` // connections / max-connections
	Zone     uint8   `json:"zone"` // admission zone, 0 GREEN .. 3 RED
}

// Report returns the node's view of the cluster. Safe for concurrent use.
func (n *Node) Report() Report {
	d := n.dir
	ready, why := d.Ready()
	r := Report{
		Mode: n.cfg.Mode, Name: n.cfg.Name, NodeID: n.cfg.NodeID, Epoch: d.epoch,
		Ready: ready, NotReadyWhy: why, Fenced: d.fenced.Load(),
		LeaseAgeMs: d.leaseAge().Milliseconds(),
		LeaseTTLMs: d.cfg.LeaseTTL.Milliseconds(), LocalNames: d.Len(), // the bucket's, if shorter
	}
	d.lmu.RLock()
	for id, l := range d.liveNodes {
		r.Nodes = append(r.Nodes, NodeReport{ID: id, Self: id == n.cfg.NodeID, Addr: l.addr, Epoch: l.epoch,
			Draining: l.draining, Load: float64(l.load) / 10_000, Zone: l.zone})
	}
	d.lmu.RUnlock()
	slices.SortFunc(r.Nodes, func(a, b NodeReport) int { return cmp.Compare(a.ID, b.ID) })
	if n.fwd != nil {
		r.Forwarding, r.Queued = n.fwd.Stats(), n.fwd.queued()
	}
	return r
}

// writeDirectoryMetrics writes the directory's gauges and counters in the Prometheus text
// format; the server's /metrics includes them through the forwarder (RemoteMetrics).
func (d *Directory) writeDirectoryMetrics(w io.Writer) {
	ready, _ := d.Ready()
	d.lmu.RLock()
	live := len(d.liveNodes)
	d.lmu.RUnlock()
	writeFamily(w, "switchboard_cluster_ready", "gauge", "1 when the cluster directory answers (the node's /readyz includes it).", b2i(ready))
	writeFamily(w, "switchboard_cluster_fenced", "gauge", "1 once this node fenced itself for failing to renew its lease; it serves no names and restarts.", b2i(d.fenced.Load()))
	writeFamily(w, "switchboard_cluster_isolated", "gauge", "1 while this node is cut off from NATS or from most other nodes; it serves no names meanwhile (REGISTER gets UNAVAILABLE).", b2i(d.isolated.Load()))
	writeFamily(w, "switchboard_cluster_nodes", "gauge", "Nodes with a live lease, this one included, as the leases watch sees them.", live)
	writeFamily(w, "switchboard_cluster_local_names", "gauge", "Names owned by this node's connections.", d.Len())
	writeFamily(w, "switchboard_cluster_lease_age_seconds", "gauge", "Seconds since this node's last successful lease renewal was sent.",
		d.leaseAge().Seconds())
	writeFamily(w, "switchboard_cluster_lease_ttl_seconds", "gauge", "The lease TTL (cluster-lease-ttl, or the leases bucket's if shorter): a node whose lease is not renewed for this long is taken for dead.", d.cfg.LeaseTTL.Seconds())
	writeFamily(w, "switchboard_cluster_watch_restarts_total", "counter", "Restarts of the names and leases watches.", d.watchRestarts.Load())
	writeDurations(w, "switchboard_cluster_watch_delay_seconds",
		"Seconds from a names or leases update's store in the KV (the stream leader's clock) to its being applied on this node, every update after the node's first replay: how stale this node's view of the cluster is.",
		"watch", []string{"names", "leases"}, []*durations{&d.namesDelay, &d.leasesDelay})
	writeDurations(w, "switchboard_cluster_claim_seconds",
		"Seconds REGISTERs the cache could not answer spent waiting for a claim worker (stage queued) and being decided by it against the KV (stage decided).",
		"stage", []string{"queued", "decided"}, []*durations{&d.claimQueued, &d.claimDecided})
	const batchesName = "switchboard_cluster_claim_batches_total"
	fmt.Fprintf(w, "# HELP %s Atomic batches of claims this node wrote to the KV (while REGISTERs queued for claim workers), by outcome: committed (every claim in it decided), refused (a claim's CAS failed: split, down to single claims) or unanswered (read back).\n# TYPE %s counter\n", batchesName, batchesName)
	for i, name := range batchOutcomeNames {
		fmt.Fprintf(w, "%s{outcome=%q} %d\n", batchesName, name, d.batches[i].Load())
	}
	writeFamily(w, "switchboard_cluster_claims_batched_total", "counter", "Claims decided in committed atomic batches (the rest were written one by one).", d.batched.Load())
	writeFamily(w, "switchboard_cluster_reconciled_total", "counter", "KV entries deleted because their claim had been reported to the client as failed (UNAVAILABLE) but had landed.", d.reconciled.Load())
	writeFamily(w, "switchboard_cluster_claims_in_doubt", "gauge", "Claims reported as failed whose KV write may have landed, waiting to be reconciled.", d.doubtCount())
	writeFamily(w, "switchboard_cluster_probes_total", "counter", "Probes sent to other nodes: to those whose lease renewal is overdue, and to the owners of names being claimed (probe.go).", d.probes.Load())
	writeFamily(w, "switchboard_cluster_nodes_down_total", "counter", "Runs of other nodes taken for dead before their lease expired: their renewal overdue and their probe subject without responders, or their link closed and their probe not answered.", d.nodesDown.Load())
	writeFamily(w, "switchboard_cluster_links", "gauge", "Links this node holds open to other nodes' runs (one per live node that answers on its link subject).", d.linksOut.Load())
	writeFamily(w, "switchboard_cluster_links_lost_total", "counter", "Links of other nodes to this one that ended by EOF or reset (their process ended, or the connection was cut); each makes this node probe that node at once.", d.linksLost.Load())
	writeFamily(w, "switchboard_cluster_takeovers_total", "counter", "Names this node's clients claimed from an owner on a node found gone (dead by probe, or its lease expired).", d.takeovers.Load())
	writeFamily(w, "switchboard_cluster_handovers_total", "counter", "Names this node's clients claimed from a live node that had let them go (their connection closed there: a drain, a client moving) before its delete of the entry landed.", d.handovers.Load())
	writeFamily(w, "switchboard_cluster_swept_total", "counter", "Directory entries of earlier runs of this node deleted at start.", d.swept.Load())
	writeFamily(w, "switchboard_cluster_swept_gone_total", "counter", "Directory entries of other nodes' runs gone for good (no lease at two scans a minute apart) deleted by this node, while it is the sweeper: the live node with the lowest id.", d.sweptGone.Load())
}

// writeFamily writes one metric family of a single unlabelled sample, with its HELP and
// TYPE lines, in the Prometheus text format.
func writeFamily(w io.Writer, name, typ, help string, v any) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, v)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
