package server

import (
	"net/http"
	"os"
	"strings"
)

// SecretKeys are the settings whose values are secrets: never printed, logged or shown by
// an endpoint (internal/config redacts them in --print-config; the admin handler's
// /debug/pprof/cmdline redacts their flags). Read-only.
var SecretKeys = []string{"token"}

// redacted replaces a secret in RedactArgs' output.
const redacted = "<redacted>"

// RedactArgs returns a copy of a command line with the value of every secret flag
// replaced: --token X, --token=X and their one-dash forms. A secret should not be on a
// command line at all (every local user can read it in /proc; use --token-file or
// SWITCHBOARD_TOKEN), but if it is, no endpoint repeats it.
func RedactArgs(args []string) []string {
	out := make([]string, len(args))
	copy(out, args)
	for i := 1; i < len(out); i++ {
		a := out[i]
		if a == "--" {
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || !isSecretKey(name) {
			continue
		}
		if hasValue {
			out[i] = a[:strings.IndexByte(a, '=')+1] + redacted
		} else if i+1 < len(out) {
			out[i+1] = redacted
			i++
		}
	}
	return out
}

func isSecretKey(name string) bool {
	for _, k := range SecretKeys {
		if name == k {
			return true
		}
	}
	return false
}

// cmdline serves the process's command line as net/http/pprof's Cmdline does (arguments
// separated by NUL bytes), with secret flags redacted.
func cmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(strings.Join(RedactArgs(os.Args), "\x00")))
}
