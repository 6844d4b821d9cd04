package cluster

import (
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"strings"

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

// lease is the value of a node's key in the leases bucket:
//
//	version (1) | epoch (8) | client address (rest)
//
// The client address is what other nodes will send clients to (step 2: GOAWAY and
// refusals listing live nodes); it may be empty.
type lease struct {
	epoch uint64
	addr  string
}

func appendLease(dst []byte, l lease) []byte {
	dst = append(dst, entryVersion)
	dst = binary.BigEndian.AppendUint64(dst, l.epoch)
	return append(dst, l.addr...)
}

func parseLease(b []byte) (lease, bool) {
	if len(b) < 9 || b[0] != entryVersion {
		return lease{}, false
	}
	return lease{epoch: binary.BigEndian.Uint64(b[1:9]), addr: string(b[9:])}, true
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
