package cluster

import (
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/shard"
)

// Bucket names. One names bucket and one leases bucket per NATS account: the cluster
// name keeps two switchboard clusters on one NATS system apart (bucketNames).
const (
	namesBucketPrefix  = "switchboard_names_"
	leasesBucketPrefix = "switchboard_leases_"
)

// entryVersion is the first byte of every value this package writes. A reader that
// finds another version ignores the value (and logs it) rather than guessing.
const entryVersion = 1

// entryLen is the length of an encoded name entry:
//
//	version (1) | node (2) | epoch (8) | conn id (8)
//
// The node is also inside the conn id; it is written on its own so that a reader (step 2:
// the router choosing a node's subject) never depends on the ConnID layout to find it.
const entryLen = 1 + 2 + 8 + 8

// owner is who owns a name: a connection (id, which carries its node) of one run (epoch)
// of that node. A plain value.
type owner struct {
	id    shard.ConnID
	epoch uint64
}

func (o owner) node() uint16 { return o.id.Node() }

// appendOwner encodes o as a name entry's value.
func appendOwner(dst []byte, o owner) []byte {
	dst = append(dst, entryVersion)
	dst = binary.BigEndian.AppendUint16(dst, o.node())
	dst = binary.BigEndian.AppendUint64(dst, o.epoch)
	return binary.BigEndian.AppendUint64(dst, uint64(o.id))
}

// parseOwner decodes a name entry's value. It reports false for a value of another
// version or length, or whose node disagrees with its conn id.
func parseOwner(b []byte) (owner, bool) {
	if len(b) != entryLen || b[0] != entryVersion {
		return owner{}, false
	}
	o := owner{
		epoch: binary.BigEndian.Uint64(b[3:11]),
		id:    shard.ConnID(binary.BigEndian.Uint64(b[11:19])),
	}
	if binary.BigEndian.Uint16(b[1:3]) != o.node() || o.id == 0 {
		return owner{}, false
	}
	return o, true
}

// lease is the value of a node's key in the leases bucket, rewritten at every renewal:
//
//	version (1, leaseVersion) | epoch (8) | flags (1) | load (2) | zone (1) | client address (rest)
//
// flags bit 0 is "draining"; load is the node's connections per 10,000 of its maximum;
// zone is its admission zone (0 GREEN .. 3 RED). The client address is where other nodes
// send clients (GOAWAY and refusals list the live nodes, least loaded first); it may be
// empty. A version-1 lease (entryVersion: epoch and address only) still parses, with no
// load.
type lease struct {
	epoch    uint64
	addr     string
	draining bool
	load     uint16 // per 10,000
	zone     uint8

	// Not in the value: what this node has seen of the lease's holder (probe.go).
	seen time.Time // when the leases watch delivered this renewal (local clock)
	down bool      // its renewal is overdue and its probe subject has no responders
	// downAt is when this node took it for dead (markDown): a renewal of the same run
	// stored before that is one the watch delivered late, not a sign of life (applyLease).
	downAt time.Time
}

// leaseVersion is the first byte of a lease with the node's status.
const leaseVersion = 2

const leaseFlagDraining = 1

func appendLease(dst []byte, l lease) []byte {
	dst = append(dst, leaseVersion)
	dst = binary.BigEndian.AppendUint64(dst, l.epoch)
	var flags byte
	if l.draining {
		flags |= leaseFlagDraining
	}
	dst = append(dst, flags)
	dst = binary.BigEndian.AppendUint16(dst, l.load)
	dst = append(dst, l.zone)
	return append(dst, l.addr...)
}

func parseLease(b []byte) (lease, bool) {
	switch {
	case len(b) >= 9 && b[0] == entryVersion:
		return lease{epoch: binary.BigEndian.Uint64(b[1:9]), addr: string(b[9:])}, true
	case len(b) >= 13 && b[0] == leaseVersion:
		return lease{epoch: binary.BigEndian.Uint64(b[1:9]), draining: b[9]&leaseFlagDraining != 0,
			load: binary.BigEndian.Uint16(b[10:12]), zone: b[12], addr: string(b[13:])}, true
	}
	return lease{}, false
}

// nameKey maps a name (any bytes, 1..255 of them) to a KV key. KV keys allow only
// [-/_=.A-Za-z0-9], so the name is written in unpadded base64url, which uses none of
// the characters NATS subjects treat specially ('.', '*', '>').
func nameKey(name string) string { return base64.RawURLEncoding.EncodeToString([]byte(name)) }

// keyName is nameKey's inverse.
func keyName(key string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(key)
	if err != nil || len(b) == 0 || len(b) > shard.MaxNameLen {
		return "", false
	}
	return string(b), true
}

// leaseKey is the leases bucket's key of node id.
func leaseKey(node uint16) string { return "node-" + strconv.FormatUint(uint64(node), 10) }

// keyNode is leaseKey's inverse.
func keyNode(key string) (uint16, bool) {
	s, ok := strings.CutPrefix(key, "node-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err == nil && n > 0
}
