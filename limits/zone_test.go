package limits

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestZoneUpdate(t *testing.T) {
	type step struct {
		at     int64 // ns after base
		u      float64
		want   Zone
		change bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"starts-green", []step{{0, 0.1, ZoneGreen, false}}},
		{"up-is-immediate", []step{{0, 0.6, ZoneYellow, true}, {1, 0.75, ZoneOrange, true}, {2, 0.9, ZoneRed, true}}},
		{"skips-up", []step{{0, 0.95, ZoneRed, true}}},
		{"down-needs-dwell", []step{{0, 0.8, ZoneOrange, true}, {sec, 0.1, ZoneOrange, false}, {2 * sec, 0.1, ZoneGreen, true}}},
		{"down-needs-hysteresis", []step{{0, 0.8, ZoneOrange, true}, {3 * sec, 0.71, ZoneOrange, false}, {4 * sec, 0.6999, ZoneYellow, true}}},
		{"down-lands-with-hysteresis", []step{{0, 0.95, ZoneRed, true}, {3 * sec, 0.56, ZoneYellow, true}, {6 * sec, 0.54, ZoneGreen, true}}},
		{"dwell-restarts-on-up", []step{{0, 0.6, ZoneYellow, true}, {3 * sec, 0.8, ZoneOrange, true}, {4 * sec, 0.1, ZoneOrange, false}, {5 * sec, 0.1, ZoneGreen, true}}},
		{"above-one", []step{{0, 3, ZoneRed, true}}},
		{"nan-is-zero", []step{{0, math.NaN(), ZoneGreen, false}}},
		{"inf-is-red", []step{{0, math.Inf(1), ZoneRed, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			zt := NewZoneTracker(Thresholds{})
			for i, s := range tt.steps {
				z, ch := zt.Update(base+s.at, Inputs{Heap: s.u})
				if z != s.want || ch != s.change || zt.Current() != s.want {
					t.Fatalf("step %d: Update(%v) = %v, %v (Current %v); want %v, %v", i, s.u, z, ch, zt.Current(), s.want, s.change)
				}
			}
		})
	}
}

// TestZoneNoFlapping feeds inputs oscillating around each threshold within the hysteresis
// band, sampled every 100 ms for a minute: the zone changes once, on the way up.
func TestZoneNoFlapping(t *testing.T) {
	th := DefaultThresholds()
	for _, level := range []float64{th.Yellow, th.Orange, th.Red} {
		zt := NewZoneTracker(th)
		for i := range 600 {
			u := level + 0.04*math.Sin(float64(i)) // within ±0.04 < hysteresis 0.05
			zt.Update(base+int64(i)*int64(100*time.Millisecond), Inputs{LoopLag: u})
		}
		if s := zt.Snapshot(base + 60*sec); s.Changes != 1 {
			t.Errorf("around %.2f: %d zone changes in a minute; want 1", level, s.Changes)
		}
	}
}

func TestZoneWorstInput(t *testing.T) {
	zt := NewZoneTracker(Thresholds{})
	zt.Update(base, Inputs{Connections: 0.2, Queued: 0.5, Heap: 0.8, ErrorRate: 0.1, LoopLag: 0.3})
	s := zt.Snapshot(base + 3*sec)
	if s.Zone != ZoneOrange || s.Worst != "heap" || s.WorstValue != 0.8 || s.InZoneSeconds != 3 {
		t.Fatalf("Snapshot = %+v; want ORANGE, heap, 0.8, 3s", s)
	}
	if !s.ShedsLowPriority || s.RefusesConnections || s.AcceptFactor != 0.5 || s.MinDwellSeconds != 2 {
		t.Errorf("Snapshot actions = %+v; want ORANGE's", s)
	}
	zt.Update(base+4*sec, Inputs{Connections: 0.95, ErrorRate: math.Inf(1)})
	s = zt.Snapshot(base + 4*sec)
	if s.Worst != "error_rate" || s.Zone != ZoneRed {
		t.Fatalf("Snapshot = %+v; want RED with worst error_rate", s)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("json.Marshal(snapshot): %v", err)
	}
	for _, want := range []string{`"zone":"RED"`, `"worst":"error_rate"`, `"connections":0.95`, `"yellow":0.6`, `"refuses_connections":true`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
	var back ZoneSnapshot
	if err := json.Unmarshal(b, &back); err != nil || back.Zone != ZoneRed {
		t.Errorf("round trip: %v, zone %v; want nil, RED", err, back.Zone)
	}
}

func TestZoneActions(t *testing.T) {
	tests := []struct {
		z                               Zone
		name                            string
		factor                          float64
		shedLow, refuse, shedAllButCtrl bool
	}{
		{ZoneGreen, "GREEN", 1, false, false, false},
		{ZoneYellow, "YELLOW", 1, false, false, false},
		{ZoneOrange, "ORANGE", 0.5, true, false, false},
		{ZoneRed, "RED", 0, true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.z.String(); got != tt.name {
				t.Errorf("String = %q; want %q", got, tt.name)
			}
			if got := tt.z.AcceptFactor(); got != tt.factor {
				t.Errorf("AcceptFactor = %v; want %v", got, tt.factor)
			}
			if tt.z.ShedsLowPriority() != tt.shedLow || tt.z.RefusesConnections() != tt.refuse || tt.z.ShedsAllButControl() != tt.shedAllButCtrl {
				t.Errorf("ShedsLowPriority, RefusesConnections, ShedsAllButControl = %v, %v, %v; want %v, %v, %v",
					tt.z.ShedsLowPriority(), tt.z.RefusesConnections(), tt.z.ShedsAllButControl(), tt.shedLow, tt.refuse, tt.shedAllButCtrl)
			}
		})
	}
	if got := Zone(7).String(); got != "Zone(7)" {
		t.Errorf("Zone(7).String() = %q", got)
	}
	var z Zone
	if err := z.UnmarshalText([]byte("PURPLE")); err == nil {
		t.Error("UnmarshalText(PURPLE) succeeded")
	}
}

func TestZoneNoAllocs(t *testing.T) {
	zt := NewZoneTracker(Thresholds{})
	now := base
	var u float64
	if a := testing.AllocsPerRun(1000, func() {
		now += int64(time.Second)
		u = math.Mod(u+0.13, 1)
		zt.Update(now, Inputs{Heap: u})
		_ = zt.Current()
	}); a != 0 {
		t.Errorf("Update+Current: %v allocs per run; want 0", a)
	}
}
