package shard

// Directory maps names to the connections that own them. Registry is the single-node
// implementation; a cluster-wide directory (NATS-backed, later) implements the same interface.
type Directory interface {
	Register(name string, id ConnID) error
	Unregister(name string, id ConnID) error
	Lookup(name []byte) (ConnID, bool)
	Len() int
}

var _ Directory = (*Registry)(nil)
