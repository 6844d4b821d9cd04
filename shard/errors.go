package shard

import "errors"

// Sentinel errors returned by this package. Compare with errors.Is.
var (
	// ErrTableFull is returned by Table.Add when all 1<<24 slots are in use.
	ErrTableFull = errors.New("shard: connection table full")

	// ErrNameTaken is returned by Registry.Register when the name is owned
	// by a different connection.
	ErrNameTaken = errors.New("shard: name taken")

	// ErrNotFound is returned by Registry.Unregister when the name is not
	// registered.
	ErrNotFound = errors.New("shard: name not found")

	// ErrNotOwner is returned by Registry.Unregister when the name is owned
	// by a different connection.
	ErrNotOwner = errors.New("shard: not the owner of name")

	// ErrPending is returned by Directory.Claim when the claim is decided later; its
	// outcome arrives through the ClaimFunc.
	ErrPending = errors.New("shard: claim pending")

	// ErrBadName is returned by Registry.Register when the name is empty or
	// longer than MaxNameLen bytes.
	ErrBadName = errors.New("shard: bad name")

	// ErrBusy is returned by a Directory's Claim when it cannot take another claim now
	// (a cluster directory's queue towards its arbiter is full); the client may retry.
	ErrBusy = errors.New("shard: directory busy")

	// ErrUnavailable is returned (or wrapped) by a Directory that cannot decide a claim now:
	// a cluster directory that cannot reach its arbiter, or whose node fenced itself. The
	// client is told UNAVAILABLE with a retry-after.
	ErrUnavailable = errors.New("shard: directory unavailable")
)
