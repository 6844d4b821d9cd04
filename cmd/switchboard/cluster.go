package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/cluster"
	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/server"
)

// clusterStartTimeout bounds joining the cluster at start-up: a fresh embedded cluster
// answers after its JetStream meta leader is elected (seconds), a restarted node whose
// previous run crashed first waits a third of cluster-lease-ttl to see its lease unrenewed.
const clusterStartTimeout = 2 * time.Minute

// clusterConfig is the cluster part of the node's configuration.
func clusterConfig(n config.Node) cluster.Config {
	c := cluster.DefaultConfig()
	c.Mode = n.Cluster
	c.NodeID = n.NodeID
	c.Name = n.ClusterName
	c.Listen = n.ClusterListen
	c.Advertise = n.ClusterAdvertise
	c.LinkListen = n.ClusterLinkListen
	c.Routes = n.ClusterRoutes
	c.URL = n.NatsURL
	c.StoreDir = n.ClusterStoreDir
	c.Replicas = n.ClusterReplicas
	c.JetStream = n.ClusterJetstream
	c.LeaseTTL = n.ClusterLeaseTTL
	c.LeaseRenew = n.ClusterLeaseRenew
	c.ForwardQueue = n.ClusterForwardQueue
	c.ClaimWorkers = n.ClusterClaimWorkers
	c.ClaimBatch = n.ClusterClaimBatch
	return c
}

// startCluster joins the cluster when the configuration asks for one (nil, nil when
// cluster is off). SIGINT or SIGTERM while it waits for the cluster stops the wait
// (errInterrupted), so that the embedded NATS server is shut down cleanly.
func startCluster(log *slog.Logger, n config.Node) (*cluster.Node, error) {
	if n.Cluster == cluster.ModeOff {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterStartTimeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("joining the cluster", "mode", n.Cluster, "node_id", n.NodeID, "timeout", clusterStartTimeout)
	cn, err := cluster.Start(ctx, clusterConfig(n), log)
	if err != nil && errors.Is(ctx.Err(), context.Canceled) { // a signal; a timeout is DeadlineExceeded
		return nil, errInterrupted
	}
	return cn, err
}

// errInterrupted: a signal stopped serve while it was joining the cluster.
var errInterrupted = errors.New("interrupted by a signal while joining the cluster")

// shareStatus makes the node's lease carry its client address, the server's draining
// flag, load and admission zone, and the server suggest the cluster's other live nodes, least loaded first, in
// GOAWAY and TRY_OTHER refusals (the configured peers while no other node is known).
func shareStatus(log *slog.Logger, cn *cluster.Node, srv *server.Server, advertise string) {
	addr := clientAdvertise(advertise, srv.Addr())
	cn.ReportStatus(func() cluster.Status {
		st := cluster.Status{Addr: addr, Draining: srv.Draining(), Zone: uint8(srv.ZoneReport().AdmissionZone)}
		if c := srv.Capacity().Connections; c.Limit > 0 {
			st.Load = float64(c.Used) / float64(c.Limit)
		}
		return st
	})
	cn.OnPeers(func(addrs []string) {
		log.Info("cluster peers for clients", "addrs", addrs)
		if len(addrs) == 0 {
			addrs = nil // back to the configured peers
		}
		srv.SetPeers(addrs)
	})
}

// clientAdvertise is the client address other nodes are to give clients: the configured
// cluster-client-advertise, else the address the server listens on unless its host is a
// wildcard (then "": this node is suggested to nobody).
func clientAdvertise(configured string, ln net.Addr) string {
	if configured != "" {
		return configured
	}
	if ta, ok := ln.(*net.TCPAddr); ok && ta.IP != nil && !ta.IP.IsUnspecified() {
		return ta.String()
	}
	return ""
}

// withCluster adds GET /cluster to the admin handler: the node's view of the cluster
// (cluster.Report) as JSON, or {"mode":"off"} on a single node; and GET /cluster/names:
// the node's view of the directory (cluster.Node.WriteNames), 404 on a single node.
func withCluster(h http.Handler, cn *cluster.Node) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("GET /cluster", func(w http.ResponseWriter, _ *http.Request) {
		var v any = map[string]string{"mode": cluster.ModeOff}
		if cn != nil {
			v = cn.Report()
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	})
	mux.HandleFunc("GET /cluster/names", func(w http.ResponseWriter, _ *http.Request) {
		if cn == nil {
			http.Error(w, "cluster mode is off: no directory", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		// Streamed from the cache partition by partition; a failed write is the client
		// going away, nothing to report to it.
		_ = cn.WriteNames(w)
	})
	return mux
}
