package limits

import "testing"

func TestMaxConnections(t *testing.T) {
	tests := []struct {
		name       string
		requested  int
		nofile     uint64
		want       int
		wantCapped bool
	}{
		{"default-20000", 0, 20000, 20000 - 128 - 200, false},
		{"below-cap", 1000, 20000, 1000, false},
		{"above-cap", 100000, 20000, 19672, true},
		{"exactly-cap", 19672, 20000, 19672, false},
		{"production-limit", 100000, 1 << 20, 100000, false},
		{"tiny-limit", 0, 100, 0, false},
		{"tiny-limit-requested", 10, 100, 0, true},
		{"huge-limit", 0, 1 << 62, int((1 << 62) - 128 - (1<<62)/100), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, capped := MaxConnections(tt.requested, tt.nofile)
			if got != tt.want || capped != tt.wantCapped {
				t.Errorf("MaxConnections(%d, %d) = %d, %v; want %d, %v", tt.requested, tt.nofile, got, capped, tt.want, tt.wantCapped)
			}
		})
	}
}
