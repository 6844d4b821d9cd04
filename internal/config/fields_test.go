package config

import (
	"flag"
	"reflect"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/server"
)

func TestKebab(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Listen", "listen"},
		{"MaxConnections", "max-connections"},
		{"TCPDelay", "tcp-delay"},
		{"NodeID", "node-id"},
		{"ServerID", "server-id"},
		{"MaxPendingBytes", "max-pending-bytes"},
		{"IdleTimeout", "idle-timeout"},
		{"MaxNamesPerConn", "max-names-per-conn"},
		{"HTTPAddr", "http-addr"},
		{"IPv6Only", "i-pv6-only"}, // acronyms with lower-case letters are not recognised
		{"Port2Use", "port2-use"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := Kebab(tt.in); got != tt.want {
				t.Errorf("Kebab(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	if got, want := EnvName("max-connections"), "SWITCHBOARD_MAX_CONNECTIONS"; got != want {
		t.Errorf("EnvName = %q; want %q", got, want)
	}
}

// TestEveryFieldIsASetting guards against Node or server.Config gaining a field this
// package cannot handle or that nobody wrote help for.
func TestEveryFieldIsASetting(t *testing.T) {
	fields := Fields() // panics on an unsupported kind
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	RegisterFlags(fs)

	// Every exported field of Node and of server.Config is a setting or a section of
	// settings.
	for _, typ := range []reflect.Type{reflect.TypeFor[Node](), reflect.TypeFor[server.Config]()} {
		for i := range typ.NumField() {
			sf := typ.Field(i)
			if !sf.IsExported() || sf.Anonymous {
				continue
			}
			found := false
			for _, f := range fields {
				found = found || f.Name == sf.Name || strings.HasPrefix(f.Name, sf.Name+".")
			}
			if !found {
				t.Errorf("%v.%s is not a setting", typ, sf.Name)
			}
		}
	}

	keys := make(map[string]bool)
	for _, f := range fields {
		t.Run(f.Key, func(t *testing.T) {
			if keys[f.Key] {
				t.Errorf("key %q used twice", f.Key)
			}
			keys[f.Key] = true
			if f.Help == "" {
				t.Errorf("no help for %q: add a line to help in help.go", f.Key)
			}
			if fs.Lookup(f.Key) == nil {
				t.Errorf("no flag --%s", f.Key)
			}
			if f.Env != EnvName(f.Key) {
				t.Errorf("Env = %q; want %q", f.Env, EnvName(f.Key))
			}
			if got, ok := Lookup(f.Key); !ok || got.Name != f.Name {
				t.Errorf("Lookup(%q) = %v, %v", f.Key, got.Name, ok)
			}
		})
	}
	for _, k := range []string{KeyProfile, KeyConfig} {
		if keys[k] {
			t.Errorf("Node has a field with the reserved key %q", k)
		}
		if fs.Lookup(k) == nil {
			t.Errorf("no flag --%s", k)
		}
		if help[k] == "" {
			t.Errorf("no help for %q", k)
		}
	}
	// No stale help: every entry names a setting.
	for k := range help {
		if !keys[k] && k != KeyProfile && k != KeyConfig {
			t.Errorf("help for %q, which is not a setting", k)
		}
	}
	for k := range secret {
		if !keys[k] {
			t.Errorf("secret %q is not a setting", k)
		}
	}
}

// TestFormatParseRoundTrip checks that every field's default formats to text that parses
// back to the same value.
func TestFormatParseRoundTrip(t *testing.T) {
	c := DefaultNode()
	c.TCPDelay = true
	c.Token = "s3cret"
	for _, f := range Fields() {
		t.Run(f.Key, func(t *testing.T) {
			text := f.Format(&c)
			v, err := f.parse(text)
			if err != nil {
				t.Fatalf("parse(%q): %v", text, err)
			}
			if got, want := v.Interface(), f.Get(&c); got != want {
				t.Errorf("parse(Format) = %v; want %v", got, want)
			}
		})
	}
}
