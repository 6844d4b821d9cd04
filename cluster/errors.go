package cluster

import "errors"

// Sentinel errors returned by this package. Compare with errors.Is.
var (
	// ErrNodeIDInUse is returned by Start when another live process holds the lease of
	// this node id: node ids must be unique across the cluster.
	ErrNodeIDInUse = errors.New("cluster: node id in use by another live node")

	// ErrClosed is returned by Directory.Claim after Close began.
	ErrClosed = errors.New("cluster: directory closed")

	// ErrLeaseLost is what claims fail with after this node's lease was taken by
	// another run of the same node id.
	ErrLeaseLost = errors.New("cluster: node lease lost")
)
