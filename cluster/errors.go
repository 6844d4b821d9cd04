package cluster

import (
	"errors"
	"fmt"

	"github.com/switchboard/switchboard/shard"
)

// Sentinel errors returned by this package. Compare with errors.Is.
var (
	// ErrNodeIDInUse is returned by Start when another live process holds the lease of
	// this node id: node ids must be unique across the cluster.
	ErrNodeIDInUse = errors.New("cluster: node id in use by another live node")

	// ErrClosed is what claims fail with once Close began (the node is shutting down).
	// It wraps shard.ErrUnavailable: the client is told UNAVAILABLE with a retry-after,
	// and another node can decide.
	ErrClosed = fmt.Errorf("%w: cluster directory closed: this node is shutting down", shard.ErrUnavailable)

	// ErrLeaseLost says this node's lease was taken by another run of the same node id.
	// Claims fail with it wrapped in shard.ErrUnavailable, as with ErrClosed.
	ErrLeaseLost = errors.New("cluster: node lease lost")
)
