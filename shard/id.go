package shard

import "strconv"

// ConnID identifies one connection on one event loop of one node. It is also
// used as the reply token of requests.
//
// Layout, high bits to low:
//
//	node (16) | loop (8) | slot (24) | gen (16)
//
// The generation is bumped every time a Table slot is reused, so an ID kept
// after its connection closed never matches the slot's next occupant. The
// zero ConnID is never issued by a Table and means "no connection".
//
// ConnID is a plain value: safe to copy and compare from any goroutine.
type ConnID uint64

const (
	genBits  = 16
	slotBits = 24
	loopBits = 8

	slotShift = genBits
	loopShift = slotShift + slotBits
	nodeShift = loopShift + loopBits

	// MaxSlots is the number of slots a Table can hold (1<<24).
	MaxSlots = 1 << slotBits

	slotMask = MaxSlots - 1
	genMask  = 1<<genBits - 1
)

// MakeConnID packs the four fields into a ConnID. It panics if slot does not
// fit in 24 bits, which is a programmer error.
func MakeConnID(node uint16, loop uint8, slot uint32, gen uint16) ConnID {
	if slot >= MaxSlots {
		panic("BUG: shard: MakeConnID slot " + strconv.FormatUint(uint64(slot), 10) + " does not fit in 24 bits")
	}
	return ConnID(uint64(node)<<nodeShift | uint64(loop)<<loopShift | uint64(slot)<<slotShift | uint64(gen))
}

// Node returns the node number.
func (id ConnID) Node() uint16 { return uint16(id >> nodeShift) }

// Loop returns the event-loop index within the node.
func (id ConnID) Loop() int { return int(uint8(id >> loopShift)) }

// Slot returns the slot index within the loop's Table.
func (id ConnID) Slot() uint32 { return uint32(id>>slotShift) & slotMask }

// Gen returns the slot generation.
func (id ConnID) Gen() uint16 { return uint16(id & genMask) }

// String formats the ID as "n<node>/l<loop>/s<slot>/g<gen>", e.g. "n1/l0/s5/g2".
func (id ConnID) String() string {
	b := make([]byte, 0, 32)
	b = append(b, 'n')
	b = strconv.AppendUint(b, uint64(id.Node()), 10)
	b = append(b, "/l"...)
	b = strconv.AppendUint(b, uint64(id.Loop()), 10)
	b = append(b, "/s"...)
	b = strconv.AppendUint(b, uint64(id.Slot()), 10)
	b = append(b, "/g"...)
	b = strconv.AppendUint(b, uint64(id.Gen()), 10)
	return string(b)
}
