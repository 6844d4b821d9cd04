package shard

// Directory maps names to the connections that own them. Registry is the single-node
// implementation; a cluster-wide directory (claims decided over the network) implements
// the same interface.
//
// Concurrency: every method is safe for concurrent use and must not block: the server
// calls them on its event loops. A directory that has to ask someone else answers Claim
// with ErrPending and finishes the claim on its own goroutine.
type Directory interface {
	// Claim makes id the owner of name. It returns nil when id owns name now (already
	// owning it included), ErrNameTaken when another connection owns it, ErrBadName for
	// an empty or too long name, or ErrPending when the decision is made elsewhere: done
	// is then called exactly once, from any goroutine, with nil, ErrNameTaken or another
	// error. done is never called when Claim returns anything but ErrPending.
	Claim(name string, id ConnID, done ClaimFunc) error
	// Unregister releases name if id owns it (ErrNotFound, ErrNotOwner otherwise). It is
	// also how the server gives back a name whose pending claim succeeded after its
	// connection had left.
	Unregister(name string, id ConnID) error
	// Lookup returns the owner of name. It must not allocate or retain name: name may be
	// borrowed from a network buffer.
	Lookup(name []byte) (ConnID, bool)
	// Len is the number of names owned.
	Len() int
}

// ClaimFunc receives the outcome of a claim that Claim answered with ErrPending. It may
// be called on any goroutine and must not block.
type ClaimFunc func(name string, id ConnID, err error)

// Claim is Register: a single node decides at once, so done is never called.
func (r *Registry) Claim(name string, id ConnID, _ ClaimFunc) error { return r.Register(name, id) }

var _ Directory = (*Registry)(nil)
