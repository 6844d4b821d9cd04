package shard

import "testing"

func TestConnIDRoundTrip(t *testing.T) {
	tests := []struct {
		node uint16
		loop uint8
		slot uint32
		gen  uint16
		str  string
	}{
		{0, 0, 0, 1, "n0/l0/s0/g1"},
		{1, 0, 5, 2, "n1/l0/s5/g2"},
		{0xffff, 0xff, 1<<24 - 1, 0xffff, "n65535/l255/s16777215/g65535"},
		{0x8000, 0x80, 1 << 23, 0x8000, "n32768/l128/s8388608/g32768"},
		{7, 3, 0, 0, "n7/l3/s0/g0"},
		{0, 1, 0, 0, "n0/l1/s0/g0"},
	}
	for _, tt := range tests {
		t.Run(tt.str, func(t *testing.T) {
			id := MakeConnID(tt.node, tt.loop, tt.slot, tt.gen)
			if got := id.Node(); got != tt.node {
				t.Errorf("Node() = %d; want %d", got, tt.node)
			}
			if got := id.Loop(); got != int(tt.loop) {
				t.Errorf("Loop() = %d; want %d", got, tt.loop)
			}
			if got := id.Slot(); got != tt.slot {
				t.Errorf("Slot() = %d; want %d", got, tt.slot)
			}
			if got := id.Gen(); got != tt.gen {
				t.Errorf("Gen() = %d; want %d", got, tt.gen)
			}
			if got := id.String(); got != tt.str {
				t.Errorf("String() = %q; want %q", got, tt.str)
			}
		})
	}
}

func TestConnIDLayout(t *testing.T) {
	tests := []struct {
		name string
		id   ConnID
		want uint64
	}{
		{"node", MakeConnID(0xffff, 0, 0, 0), 0xffff_00_000000_0000},
		{"loop", MakeConnID(0, 0xff, 0, 0), 0x0000_ff_000000_0000},
		{"slot", MakeConnID(0, 0, 1<<24-1, 0), 0x0000_00_ffffff_0000},
		{"gen", MakeConnID(0, 0, 0, 0xffff), 0x0000_00_000000_ffff},
		{"all", MakeConnID(0x1234, 0x56, 0x789abc, 0xdef0), 0x1234_56_789abc_def0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := uint64(tt.id); got != tt.want {
				t.Errorf("got %#016x; want %#016x", got, tt.want)
			}
		})
	}
}

func TestMakeConnIDSlotOverflowPanics(t *testing.T) {
	for _, slot := range []uint32{1 << 24, 1<<32 - 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("MakeConnID(slot=%d) did not panic; want panic", slot)
				}
			}()
			MakeConnID(0, 0, slot, 1)
		}()
	}
}
