package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/cliflag"
)

// Exit codes of the client commands (send, request, listen, ping), beyond exitOK,
// exitFailure (no server reachable, or another failure) and exitUsage. Each names a class
// of server answer, so that scripts can tell them apart without parsing stderr.
const (
	exitNoRoute = 3 // NO_ROUTE: no connection owns the name
	exitTimeout = 4 // TIMEOUT from the server, or no outcome within --timeout
	exitRefused = 5 // any other ERROR: BUSY, RATE_LIMITED, QUEUE_FULL, UNAUTHORIZED, NAME_TAKEN...
)

// clientExitCodes documents the codes above for --help and doc.go.
const clientExitCodes = `Exit status:
  0  success
  1  no server could be reached, or another failure
  2  bad usage
  3  no route: no connection owns the name (NO_ROUTE)
  4  timeout: the server answered TIMEOUT, or nothing came within --timeout
  5  refused: any other ERROR from the server (BUSY, RATE_LIMITED, QUEUE_FULL,
     CIRCUIT_OPEN, SHUTTING_DOWN, UNAUTHORIZED, NAME_TAKEN, FRAME_TOO_LARGE...)`

// Environment variables of the client commands.
const (
	envServer = "SWITCHBOARD_SERVER" // --server
	envToken  = "SWITCHBOARD_TOKEN"  // the HELLO token, when --token-file is not given
)

// defaultServer is where a node listens with the built-in defaults (make run).
const defaultServer = "127.0.0.1:7400"

// clientFlags are the flags every client command shares.
type clientFlags struct {
	server    *string
	tokenFile *string
	json      *bool
	timeout   *time.Duration
	tls       *bool
	tlsCA     *string
	tlsName   *string
}

// addClientFlags defines the shared flags on fs and places them in the "Connection" and
// "Output" sections; fs.Env is set to show their environment variables.
func addClientFlags(fs *cliflag.Set) *clientFlags {
	f := &clientFlags{
		server: fs.String("server", defaultServer, "comma-separated `addresses` of nodes, tried in order; "+
			"the client moves between them on failure or GOAWAY"),
		tokenFile: fs.String("token-file", "", "read the HELLO token from `FILE` (first line); "+
			"without it the token comes from "+envToken),
		json:    fs.Bool("json", false, "print one JSON object per line"),
		timeout: fs.Duration("timeout", client.DefaultRequestTimeout, "bound on connecting and on each call"),
		tls: fs.Bool("tls", false, "connect over TLS (to a TLS-terminating proxy in front of the nodes, "+
			"see docs/SECURITY.md); the system's roots verify the certificate"),
		tlsCA:   fs.String("tls-ca", "", "verify the proxy's certificate with the PEM certificates in `FILE` (implies --tls)"),
		tlsName: fs.String("tls-server-name", "", "the `NAME` the certificate must carry (default: the host of each address)"),
	}
	fs.Section("Connection", "server", "token-file", "timeout", "tls", "tls-ca", "tls-server-name")
	fs.Section("Output", "json")
	fs.Env = func(name string) string {
		switch name {
		case "server":
			return envServer
		case "token-file":
			return "" // the variable holds the token itself, not a file: see the usage
		}
		return ""
	}
	return f
}

// getenv returns the value of name in env (NAME=value pairs), "" if absent.
func getenv(env []string, name string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// clientSetup is what the shared flags resolve to.
type clientSetup struct {
	addrs []string
	token string
	json  bool
	cfg   client.Config // without callbacks; the command adds them
}

// resolve checks the shared flags and reads the token. Problems are usage errors.
func (f *clientFlags) resolve(fs *cliflag.Set, env []string, name string) (clientSetup, error) {
	servers := *f.server
	if !isSet(fs, "server") {
		if v := getenv(env, envServer); v != "" {
			servers = v
		}
	}
	var addrs []string
	for _, a := range strings.Split(servers, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return clientSetup{}, errors.New("--server: no address given")
	}
	if *f.timeout <= 0 {
		return clientSetup{}, fmt.Errorf("--timeout: want a positive duration, got %v", *f.timeout)
	}
	token := getenv(env, envToken)
	if *f.tokenFile != "" {
		b, err := os.ReadFile(*f.tokenFile)
		if err != nil {
			return clientSetup{}, fmt.Errorf("--token-file: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if token = strings.TrimSpace(line); token == "" {
			return clientSetup{}, fmt.Errorf("--token-file: %s: the first line is empty", *f.tokenFile)
		}
	}
	if len(token) > 255 {
		return clientSetup{}, fmt.Errorf("token: %d bytes; the protocol allows 255", len(token))
	}
	tlsCfg, err := f.tlsConfig()
	if err != nil {
		return clientSetup{}, err
	}
	return clientSetup{
		addrs: addrs,
		token: token,
		json:  *f.json,
		cfg: client.Config{
			Name:             name,
			Token:            token,
			DialTimeout:      *f.timeout,
			HandshakeTimeout: *f.timeout,
			RequestTimeout:   *f.timeout,
			TLS:              tlsCfg,
		},
	}, nil
}

// tlsConfig is the client's TLS configuration, or nil without --tls or --tls-ca.
func (f *clientFlags) tlsConfig() (*tls.Config, error) {
	if !*f.tls && *f.tlsCA == "" {
		if *f.tlsName != "" {
			return nil, errors.New("--tls-server-name: needs --tls")
		}
		return nil, nil
	}
	cfg := &tls.Config{ServerName: *f.tlsName, MinVersion: tls.VersionTLS12}
	if *f.tlsCA != "" {
		pem, err := os.ReadFile(*f.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca: %s: no PEM certificate in it", *f.tlsCA)
		}
	}
	return cfg, nil
}

// isSet reports whether the flag name was given on the command line.
func isSet(fs *cliflag.Set, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// dial connects with cfg, logging the client's connection events on stderr at level.
func (s clientSetup) dial(ctx context.Context, c *cli, cfg client.Config, level slog.Level) (*client.Client, error) {
	cfg.Logger = slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout*time.Duration(len(s.addrs))+cfg.HandshakeTimeout)
	defer cancel()
	return client.Dial(ctx, s.addrs, cfg)
}

// exitCode maps a client error to the command's exit status.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, client.ErrNoRoute):
		return exitNoRoute
	case errors.Is(err, client.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return exitTimeout
	}
	var se *client.ServerError
	if errors.As(err, &se) {
		return exitRefused
	}
	return exitFailure
}

// errorFields describes err for --json output and for the one-line message: the ERROR
// code and reason when the server refused, else the error text.
type errorFields struct {
	Code   string `json:"code,omitempty"`   // NO_ROUTE, TIMEOUT...; "" when not an ERROR frame
	Reason string `json:"reason,omitempty"` // the server's reason
	Node   string `json:"node,omitempty"`   // the node that answered, when known
	Error  string `json:"error"`            // the whole error text
	Exit   int    `json:"exit"`             // the exit status this error leads to
}

func describe(err error, node string) errorFields {
	d := errorFields{Node: node, Error: err.Error(), Exit: exitCode(err)}
	var se *client.ServerError
	switch {
	case errors.As(err, &se):
		d.Code, d.Reason = se.Code.String(), se.Reason
	case errors.Is(err, client.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		d.Code = codec.CodeTimeout.String()
		d.Reason = "no outcome within --timeout"
	}
	return d
}

// report prints err for command cmd — as JSON on stdout with --json, else one line per
// problem on stderr — and returns the exit status it maps to.
func report(c *cli, jsonOut bool, cmd, node string, err error) int {
	d := describe(err, node)
	if jsonOut {
		writeJSONLine(c.stdout, map[string]any{"error": d})
		return d.Exit
	}
	// Without a node the error is Dial's: one line per address, each naming it.
	msg := err.Error()
	if d.Code != "" && node != "" {
		msg = d.Code
		if d.Reason != "" {
			msg += ": " + d.Reason
		}
		msg += " (node " + node + ")"
	}
	printProblems(c.stderr, "switchboard "+cmd+": ", errors.New(msg))
	return d.Exit
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic("BUG: unencodable JSON output: " + err.Error())
	}
	_, _ = w.Write(append(b, '\n'))
}

// payloadJSON adds a payload to a JSON object: as "payload" when it is UTF-8, else as
// base64 in "payload_base64".
func payloadJSON(obj map[string]any, p []byte) map[string]any {
	if utf8.Valid(p) {
		obj["payload"] = string(p)
	} else {
		obj["payload_base64"] = p // encoding/json writes []byte as base64
	}
	return obj
}

// readPayload returns the payload argument at index i of args, or stdin when args has no
// such argument.
func readPayload(c *cli, args []string, i int) ([]byte, error) {
	if len(args) > i {
		return []byte(args[i]), nil
	}
	if c.stdin == nil {
		return nil, nil
	}
	b, err := io.ReadAll(c.stdin)
	if err != nil {
		return nil, fmt.Errorf("reading the payload from stdin: %w", err)
	}
	return b, nil
}

// millisOf returns d in milliseconds, with microsecond precision.
func millisOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// parseInterspersed parses args into fs, allowing flags after positional arguments
// (`listen svc --echo`), which the flag package alone stops at. Arguments after "--" are
// all positional. It returns the positional arguments, or done and the exit status as
// parseFlags does.
func parseInterspersed(c *cli, fs *cliflag.Set, args []string) (pos []string, code int, done bool) {
	for {
		if code, done := parseFlags(c, fs, args); done {
			return nil, code, true
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), exitOK, false
		}
		if len(rest) == 0 {
			return pos, exitOK, false
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
