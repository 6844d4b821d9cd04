package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-from-file\r\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := load(t, "", nil, "--token-file", tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.Token != "s3cret-from-file" || l.Sources["token"] != SourceTokenFile {
		t.Fatalf("token %q from %q; want s3cret-from-file from token-file", l.Config.Token, l.Sources["token"])
	}
	// --print-config shows the file, not the token.
	var out bytes.Buffer
	if err := WriteYAML(&out, l); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "s3cret") || !strings.Contains(out.String(), "token: "+Redacted) ||
		!strings.Contains(out.String(), "token-file: "+tokenFile) {
		t.Fatalf("--print-config shows the token or hides the file:\n%s", out.String())
	}

	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	for _, tt := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"both", []string{"SWITCHBOARD_TOKEN=x"}, []string{"--token-file", tokenFile}, "set token or token-file, not both"},
		{"empty", nil, []string{"--token-file", empty}, "empty first line"},
		{"missing", nil, []string{"--token-file", filepath.Join(dir, "nope")}, "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, "", tt.env, tt.args...)
			var e *Error
			if !errors.As(err, &e) || e.Key != "token-file" || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load: %v; want a token-file error saying %q", err, tt.want)
			}
		})
	}
}

// TestPrintConfigRedactsEnvToken: a token from SWITCHBOARD_TOKEN is not printed either.
func TestPrintConfigRedactsEnvToken(t *testing.T) {
	l, err := load(t, "", []string{"SWITCHBOARD_TOKEN=hunter2"})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_ = WriteYAML(&out, l)
	if strings.Contains(out.String(), "hunter2") {
		t.Fatalf("--print-config shows the token:\n%s", out.String())
	}
}

func TestLoadCredentials(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	good := writeFile(t, "users:\n  billing:\n    token-hash: '"+string(h)+"'\n    register: ['billing.*']\n"+
		"    send: [audit, 'billing.*']\n  audit:\n    token-hash: '"+string(h)+"'\n")
	c, err := LoadCredentials(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 2 {
		t.Fatalf("%d users; want 2", c.Len())
	}
	for _, tt := range []struct{ name, yaml, want string }{
		{"unknown-key", "users:\n  a:\n    token-hash: '" + string(h) + "'\n    sned: [x]\n", "field sned not found"},
		{"bad-hash", "users:\n  a:\n    token-hash: plain\n", `user "a": token-hash is not a bcrypt hash`},
		{"bad-pattern", "users:\n  a:\n    token-hash: '" + string(h) + "'\n    request: ['*.x']\n", `request: pattern "*.x"`},
		{"duplicate", "users:\n  a:\n    token-hash: '" + string(h) + "'\n  a:\n    token-hash: '" + string(h) + "'\n", "already defined"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadCredentials(writeFile(t, tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadCredentials: %v; want an error saying %q", err, tt.want)
			}
		})
	}
	if _, err := LoadCredentials(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, ErrFile) {
		t.Fatalf("missing file: %v; want ErrFile", err)
	}
	if _, err := load(t, "", []string{"SWITCHBOARD_TOKEN=x"}, "--credentials", good); err == nil ||
		!strings.Contains(err.Error(), "not both") {
		t.Fatalf("token and credentials: %v; want an error", err)
	}
}
