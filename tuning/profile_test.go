package tuning

import (
	"slices"
	"testing"
)

func TestProfilesNamesAndLookup(t *testing.T) {
	names := Names()
	if want := []string{"balanced", "small", "throughput", "latency"}; !slices.Equal(names, want) {
		t.Fatalf("Names() = %q; want %q", names, want)
	}
	if names[0] != Default {
		t.Errorf("first profile %q; want the default %q", names[0], Default)
	}
	for _, name := range names {
		p, ok := Lookup(name)
		if !ok || p.Name != name {
			t.Errorf("Lookup(%q) = %q, %v; want the profile", name, p.Name, ok)
		}
	}
	for _, name := range []string{"", "Balanced", "large", " small"} {
		if _, ok := Lookup(name); ok {
			t.Errorf("Lookup(%q) found a profile; want none", name)
		}
	}
}

func TestProfilesAreSound(t *testing.T) {
	for _, p := range Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			if p.Intent == "" {
				t.Error("no Intent")
			}
			if p.MemoryBudget <= 0 || p.Connections <= 0 {
				t.Errorf("MemoryBudget, Connections = %d, %d; want positive", p.MemoryBudget, p.Connections)
			}
			if p.GOMEMLIMIT <= 0 || p.GOMEMLIMIT >= p.MemoryBudget {
				t.Errorf("GOMEMLIMIT %d; want within (0, MemoryBudget %d): RSS holds more than the runtime counts",
					p.GOMEMLIMIT, p.MemoryBudget)
			}
			if p.GOGC < 0 || p.GOMAXPROCS < 0 {
				t.Errorf("GOGC, GOMAXPROCS = %d, %d; want >= 0", p.GOGC, p.GOMAXPROCS)
			}
			// That every key of p.Settings is a setting and its value parses and validates
			// is checked by internal/config, which owns the keys (TestProfileSettingsLoad).
		})
	}
}

func TestSmallFitsItsBudget(t *testing.T) {
	p, _ := Lookup("small")
	if p.Connections != 100_000 || p.MemoryBudget > 150*MiB || p.GOMEMLIMIT < 128*MiB {
		t.Errorf("small: %d connections in %s with GOMEMLIMIT %s; want 100000 in <= 150MiB with ~140MiB",
			p.Connections, FormatBytes(p.MemoryBudget), FormatBytes(p.GOMEMLIMIT))
	}
	if p.GOGC >= 100 {
		t.Errorf("small GOGC = %d; want below Go's 100", p.GOGC)
	}
}

func TestProfilesAreFreshValues(t *testing.T) {
	p, _ := Lookup("small")
	p.Settings["read-buffer-cap"] = "1"
	p.Why["read-buffer-cap"] = "changed"
	q, _ := Lookup("small")
	if q.Settings["read-buffer-cap"] == "1" || q.Why["read-buffer-cap"] == "changed" {
		t.Error("changing a returned profile changed the next Lookup's")
	}
}

func TestFormatBytes(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{
		{0, "none"}, {-1, "none"}, {1 << 62, "4294967296GiB"}, {140 * MiB, "140MiB"},
		{2 << 30, "2GiB"}, {1536 * KiB, "1536KiB"}, {1000, "1000B"},
	} {
		if got := FormatBytes(tt.n); got != tt.want {
			t.Errorf("FormatBytes(%d) = %q; want %q", tt.n, got, tt.want)
		}
	}
}
