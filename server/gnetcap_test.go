package server

import "testing"

func TestGnetBufferCap(t *testing.T) {
	for _, tt := range []struct{ in, want int }{{0, 64 << 10}, {-1, 64 << 10}, {1, 1024}, {1024, 1024}, {1025, 2048}, {16 << 10, 16 << 10}, {100000, 131072}} {
		if got := gnetBufferCap(tt.in); got != tt.want {
			t.Errorf("gnetBufferCap(%d) = %d; want %d", tt.in, got, tt.want)
		}
	}
}
