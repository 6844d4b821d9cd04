package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/cluster"
	"github.com/switchboard/switchboard/internal/config"
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
	c.Routes = n.ClusterRoutes
	c.URL = n.NatsURL
	c.StoreDir = n.ClusterStoreDir
	c.Replicas = n.ClusterReplicas
	c.LeaseTTL = n.ClusterLeaseTTL
	c.LeaseRenew = n.ClusterLeaseRenew
	c.ForwardQueue = n.ClusterForwardQueue
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
