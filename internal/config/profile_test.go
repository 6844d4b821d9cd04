package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/server"
	"github.com/switchboard/switchboard/tuning"
)

// TestProfilePrecedence checks defaults < profile < file < env < flags, field by field,
// and the choice of profile: flag > env > file > balanced.
func TestProfilePrecedence(t *testing.T) {
	const file = "profile: small\nmax-pending: 2000\n"
	tests := []struct {
		name        string
		yaml        string
		env         []string
		args        []string
		wantProfile string
		wantPending int
		wantPendSrc string
		wantRead    int // read-buffer-cap: small sets 16 KiB, throughput 256 KiB
		wantReadSrc string
	}{
		{"none", "", nil, nil, "balanced", server.DefaultMaxPending, SourceDefault, server.DefaultBufferCap, SourceDefault},
		{"file names it, file overrides one field", file, nil, nil, "small", 2000, SourceFile, 16 << 10, SourceProfile},
		{"env names it", "", []string{"SWITCHBOARD_PROFILE=small"}, nil, "small", 256, SourceProfile, 16 << 10, SourceProfile},
		{"env overrides the profile's field", "", []string{"SWITCHBOARD_PROFILE=small", "SWITCHBOARD_READ_BUFFER_CAP=32768"}, nil,
			"small", 256, SourceProfile, 32 << 10, SourceEnv},
		{"env profile beats file profile", file, []string{"SWITCHBOARD_PROFILE=throughput"}, nil, "throughput", 2000, SourceFile, 256 << 10, SourceProfile},
		{"flag profile beats env", file, []string{"SWITCHBOARD_PROFILE=throughput"}, []string{"--profile=latency"},
			"latency", 2000, SourceFile, server.DefaultBufferCap, SourceDefault},
		{"flag overrides the profile's field", "", nil, []string{"--profile=small", "--max-pending=9"}, "small", 9, SourceFlag, 16 << 10, SourceProfile},
		{"file sets a field back to the default value", "profile: small\nread-buffer-cap: 65536\n", nil, nil,
			"small", 256, SourceProfile, 64 << 10, SourceFile},
		{"empty profile means balanced", "profile: \"\"\n", nil, nil, "balanced", server.DefaultMaxPending, SourceDefault, server.DefaultBufferCap, SourceDefault},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := load(t, tt.yaml, tt.env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if l.Profile != tt.wantProfile {
				t.Errorf("Profile = %q; want %q", l.Profile, tt.wantProfile)
			}
			if l.Config.MaxPending != tt.wantPending || l.Sources["max-pending"] != tt.wantPendSrc {
				t.Errorf("max-pending = %d from %s; want %d from %s", l.Config.MaxPending, l.Sources["max-pending"], tt.wantPending, tt.wantPendSrc)
			}
			if l.Config.ReadBufferCap != tt.wantRead || l.Sources["read-buffer-cap"] != tt.wantReadSrc {
				t.Errorf("read-buffer-cap = %d from %s; want %d from %s", l.Config.ReadBufferCap, l.Sources["read-buffer-cap"], tt.wantRead, tt.wantReadSrc)
			}
		})
	}
}

// TestProfileSettingsLoad checks every profile's Settings: each key is a setting, each
// value parses and validates, and exactly those keys are marked SourceProfile with the
// profile's value.
func TestProfileSettingsLoad(t *testing.T) {
	for _, p := range tuning.Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			l, err := load(t, "", []string{"SWITCHBOARD_PROFILE=" + p.Name})
			if err != nil {
				t.Fatal(err)
			}
			for key := range p.Settings {
				if _, ok := Lookup(key); !ok {
					t.Errorf("Settings names %q, which is not a setting", key)
				}
			}
			for _, f := range Fields() {
				text, set := p.Settings[f.Key]
				if got := l.Sources[f.Key] == SourceProfile; got != set {
					t.Errorf("%s: source %s; profile sets it: %v", f.Key, l.Sources[f.Key], set)
				}
				if !set {
					continue
				}
				want, err := f.parse(text)
				if err != nil {
					t.Errorf("%s: profile value %q: %v", f.Key, text, err)
				} else if got := f.Get(&l.Config); got != want.Interface() {
					t.Errorf("%s = %v; want the profile's %v", f.Key, got, want)
				}
			}
		})
	}
}

// TestProfileWhy checks that each profile explains every setting it makes, by a real
// config key.
func TestProfileWhy(t *testing.T) {
	for _, p := range tuning.Profiles() {
		for key := range p.Settings {
			if p.Why[key] == "" {
				t.Errorf("%s sets %s without a Why", p.Name, key)
			}
		}
		for key := range p.Why {
			if _, ok := Lookup(key); !ok {
				t.Errorf("%s: Why names %q, which is not a setting", p.Name, key)
			}
		}
	}
}

func TestUnknownProfile(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		env   []string
		args  []string
		where string
	}{
		{"file", "profile: huge\n", nil, nil, "switchboard.yaml:1: profile"},
		{"env", "", []string{"SWITCHBOARD_PROFILE=huge"}, nil, "SWITCHBOARD_PROFILE: profile"},
		{"flag", "", nil, []string{"--profile", "huge"}, "--profile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.yaml, tt.env, tt.args...)
			if !errors.Is(err, ErrInvalidValue) {
				t.Fatalf("err = %v; want ErrInvalidValue", err)
			}
			for _, w := range []string{tt.where, `unknown profile "huge"`, "balanced, small, throughput, latency"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadFileAppliesProfile(t *testing.T) {
	l, err := LoadFile(writeFile(t, "profile: latency\nframes-per-wake: 64\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l.Profile != "latency" || l.Config.TickInterval != 10*time.Millisecond || l.Sources["tick-interval"] != SourceProfile ||
		l.Config.FramesPerWake != 64 || l.Sources["frames-per-wake"] != SourceFile {
		t.Errorf("profile %q, tick-interval %v (%s), frames-per-wake %d (%s); want latency's tick, the file's frames",
			l.Profile, l.Config.TickInterval, l.Sources["tick-interval"], l.Config.FramesPerWake, l.Sources["frames-per-wake"])
	}
}
