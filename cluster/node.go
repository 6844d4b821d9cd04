package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Node is this process's membership of the cluster: in ModeEmbedded a nats-server that
// joins the other nodes' through routes, a NATS connection, and the Directory over it.
type Node struct {
	cfg Config
	log *slog.Logger
	ns  *natsserver.Server // nil in ModeExternal
	nc  *nats.Conn
	dir *Directory
	fwd *Forwarder
}

// Start joins the cluster described by cfg (Mode embedded or external) and returns once
// the directory answers: the buckets exist, this node holds its lease with a new epoch,
// and the names watch has replayed the bucket. It fails with ErrNodeIDInUse if another
// live node has cfg.NodeID, and with ctx's error if the cluster does not become ready in
// time (a fresh embedded cluster takes a few seconds: JetStream answers after its meta
// leader is elected). On error nothing is left running.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Mode == ModeOff {
		return nil, errors.New("cluster: Mode is off: nothing to start")
	}
	n := &Node{cfg: cfg, log: log.With("component", "cluster")}
	var err error
	opts := []nats.Option{
		nats.Name(fmt.Sprintf("switchboard node %d", cfg.NodeID)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				n.log.Warn("NATS connection lost", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { n.log.Info("NATS connection restored", "url", c.ConnectedUrlRedacted()) }),
	}
	if cfg.Mode == ModeEmbedded {
		if n.ns, err = startEmbedded(&cfg, log); err != nil {
			return nil, err
		}
		n.nc, err = nats.Connect("", append(opts, nats.InProcessServer(n.ns))...)
	} else {
		n.nc, err = nats.Connect(cfg.URL, append(opts, nats.RetryOnFailedConnect(false))...)
	}
	if err != nil {
		n.stopNATS()
		return nil, fmt.Errorf("cluster: connect: %w", err)
	}
	n.dir = newDirectory(cfg, n.log, n.nc)
	if n.ns != nil {
		acc := n.ns.GlobalAccount() // the in-process connection's account ($G)
		n.dir.reachable = acc.SubscriptionInterest
	}
	if err := n.dir.start(ctx); err != nil {
		_ = n.dir.stop(context.Background(), false)
		n.stopNATS()
		n.dir.wait()
		return nil, err
	}
	n.fwd = newForwarder(cfg, n.log, n.nc, n.dir.epoch, n.dir.nodeEpoch)
	n.fwd.extraMetrics = n.dir.writeDirectoryMetrics // the server's /metrics shows both
	if err := n.fwd.start(); err != nil {
		n.fwd.close(false)
		_ = n.dir.stop(context.Background(), false)
		n.stopNATS()
		n.dir.wait()
		return nil, err
	}
	attrs := []any{"mode", cfg.Mode, "node_id", cfg.NodeID, "epoch", n.dir.epoch, "cluster_name", cfg.Name,
		"replicas", cfg.Replicas, "lease_ttl", cfg.LeaseTTL, "lease_renew", cfg.LeaseRenew,
		"forward_subject", n.fwd.subject(cfg.NodeID), "forward_queue", cfg.ForwardQueue, "max_record", n.fwd.MaxRecord()}
	if n.ns != nil {
		attrs = append(attrs, "route_listen", n.ns.ClusterAddr().String(), "jetstream", cfg.JetStream,
			"nats_client_url", n.ns.ClientURL()) // where an external-mode node may connect (loopback only)
		if jc := n.ns.JetStreamConfig(); jc != nil {
			attrs = append(attrs, "store_dir", jc.StoreDir)
		}
	}
	n.log.Info("cluster directory ready", attrs...)
	return n, nil
}

// Directory returns the node's name directory (pass it to server.WithDirectory).
func (n *Node) Directory() *Directory { return n.dir }

// Forwarder returns the node's cross-node transport (pass it to server.WithRemote, and
// the server's DeliverRemote to its SetHandler).
func (n *Node) Forwarder() *Forwarder { return n.fwd }

// Ready reports whether the node's directory answers, and if not, why. Safe for
// concurrent use.
func (n *Node) Ready() (bool, string) { return n.dir.Ready() }

// Close leaves the cluster: the directory finishes the name deletes queued (until ctx
// ends) and deletes this node's lease, so that other nodes can take over any name it
// still held at once; then the NATS connection closes and the embedded server shuts
// down (stepping down from the raft leaderships it holds first). Call it after the
// server has shut down, so that the names of its connections are released. Close
// returns when everything it started has stopped.
func (n *Node) Close(ctx context.Context) error {
	start := time.Now()
	n.fwd.close(true)
	err := n.dir.stop(ctx, true)
	n.stopNATS()
	n.dir.wait()
	n.log.Info("cluster node stopped", "took", time.Since(start).Round(time.Millisecond))
	return err
}

// kill stops the node as a crash would leave the cluster: no deletes flushed, no lease
// released. For tests.
func (n *Node) kill() {
	n.fwd.close(false)
	_ = n.dir.stop(context.Background(), false)
	n.stopNATS()
	n.dir.wait()
}

func (n *Node) stopNATS() {
	if n.nc != nil {
		n.nc.Close()
	}
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
	}
}
