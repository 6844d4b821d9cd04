package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestRedactArgs(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"separate", []string{"sb", "serve", "--token", "s3cret", "--loops", "2"}, []string{"sb", "serve", "--token", redacted, "--loops", "2"}},
		{"equals", []string{"sb", "serve", "--token=s3cret"}, []string{"sb", "serve", "--token=" + redacted}},
		{"one-dash", []string{"sb", "-token", "s3cret", "-token=x"}, []string{"sb", "-token", redacted, "-token=" + redacted}},
		{"last", []string{"sb", "--token"}, []string{"sb", "--token"}},
		{"not-a-flag", []string{"sb", "token", "s3cret"}, []string{"sb", "token", "s3cret"}},
		{"other-flag", []string{"sb", "--token-file", "/etc/sb/token"}, []string{"sb", "--token-file", "/etc/sb/token"}},
		{"after-dashdash", []string{"sb", "--", "--token", "x"}, []string{"sb", "--", "--token", "x"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.args)
			if got := RedactArgs(tt.args); !slices.Equal(got, tt.want) {
				t.Fatalf("RedactArgs(%q) = %q; want %q", tt.args, got, tt.want)
			}
			if !slices.Equal(in, tt.args) {
				t.Fatal("RedactArgs changed its argument")
			}
		})
	}
}

// TestAdminCmdlineRedacted: /debug/pprof/cmdline does not show a --token value.
func TestAdminCmdlineRedacted(t *testing.T) {
	saved := os.Args
	os.Args = []string{"switchboard", "serve", "--token", "hunter2", "--listen", ":7400"}
	t.Cleanup(func() { os.Args = saved })
	s := startServer(t, Config{})
	rec := httptest.NewRecorder()
	s.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/cmdline", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != http.StatusOK || strings.Contains(string(body), "hunter2") {
		t.Fatalf("cmdline: %d %q; want 200 without the token", rec.Code, body)
	}
	if want := "switchboard\x00serve\x00--token\x00" + redacted + "\x00--listen\x00:7400"; string(body) != want {
		t.Fatalf("cmdline %q; want %q", body, want)
	}
}
