package bench

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestRampSeries(t *testing.T) {
	for _, tc := range []struct {
		name        string
		est, failed []int
		want        []RampPoint
	}{
		{"empty", nil, nil, []RampPoint{}},
		{"established only", []int{3, 5, 2}, nil,
			[]RampPoint{{0, 3, 0, 3}, {1, 5, 0, 8}, {2, 2, 0, 10}}},
		{"failures outlast", []int{4}, []int{0, 1, 2},
			[]RampPoint{{0, 4, 0, 4}, {1, 0, 1, 4}, {2, 0, 2, 4}}},
		{"quiet tail dropped", []int{1, 0, 1, 0, 0}, []int{0, 0, 0, 0},
			[]RampPoint{{0, 1, 0, 1}, {1, 0, 0, 1}, {2, 1, 0, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rampSeries(tc.est, tc.failed); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("rampSeries(%v, %v) = %v; want %v", tc.est, tc.failed, got, tc.want)
			}
		})
	}
}

// TestRampMerge merges two parts' counts the way the parent does.
func TestRampMerge(t *testing.T) {
	var c connCounts
	c.add(connCounts{EstablishedBySec: []int{1, 2}, FailedBySec: []int{0, 1}})
	c.add(connCounts{EstablishedBySec: []int{3, 0, 4}})
	if want := []int{4, 2, 4}; !reflect.DeepEqual(c.EstablishedBySec, want) {
		t.Fatalf("established by second %v; want %v", c.EstablishedBySec, want)
	}
	if want := []int{0, 1}; !reflect.DeepEqual(c.FailedBySec, want) {
		t.Fatalf("failed by second %v; want %v", c.FailedBySec, want)
	}
}

func TestRampCountsBySecond(t *testing.T) {
	r := rampCounts{t0: 10e9}
	for _, at := range []int64{10e9, 10.5e9, 11e9 - 1, 12.2e9, 9e9} { // 9e9: a clock before t0 counts as second 0
		r.established = bump(r.established, r.sec(at))
	}
	if want := []int{4, 0, 1}; !reflect.DeepEqual(r.established, want) {
		t.Fatalf("by second %v; want %v", r.established, want)
	}
}

func TestWriteRamp(t *testing.T) {
	pts := rampSeries([]int{100, 250, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7}, []int{0, 3})
	var b bytes.Buffer
	writeRamp(&b, pts)
	out := b.String()
	for _, want := range []string{"peak 250 conns/s", " 100 250[3] 50 0", "12-13s ", " 7\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("ramp output lacks %q:\n%s", want, out)
		}
	}
	if peakRate(pts) != 250 {
		t.Errorf("peakRate = %d; want 250", peakRate(pts))
	}
}
