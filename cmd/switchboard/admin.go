package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/config"
)

// adminAccess is how the admin endpoints are protected: decided once at start-up from
// the configuration and the environment (adminAccessFor), immutable afterwards.
type adminAccess struct {
	token    []byte // bearer token every request must carry; nil: none required
	pprof    bool   // serve /debug/pprof/
	loopback bool   // the admin address is a loopback address
}

// adminAccessFor decides the admin endpoints' protection. Off loopback a token is
// required (from admin-token-file or SWITCHBOARD_ADMIN_TOKEN, not both), and pprof is
// off unless admin-pprof is on. Its errors are configuration errors (exit 2).
func adminAccessFor(n config.Node, environ []string) (adminAccess, error) {
	var a adminAccess
	if n.Admin == "off" {
		return a, nil
	}
	a.loopback = loopbackAddr(n.Admin)
	var envToken string
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, config.EnvAdminToken+"="); ok {
			envToken = v
		}
	}
	switch {
	case n.AdminTokenFile != "" && envToken != "":
		return a, fmt.Errorf("admin: both admin-token-file and %s are set; set one", config.EnvAdminToken)
	case n.AdminTokenFile != "":
		data, err := os.ReadFile(n.AdminTokenFile)
		if err != nil {
			return a, fmt.Errorf("admin: admin-token-file: %w", err)
		}
		if a.token = bytes.TrimSpace(data); len(a.token) == 0 {
			return a, fmt.Errorf("admin: admin-token-file %s is empty", n.AdminTokenFile)
		}
	case envToken != "":
		a.token = []byte(strings.TrimSpace(envToken))
	}
	if !a.loopback && len(a.token) == 0 {
		return a, fmt.Errorf("admin: %s is not a loopback address, and the admin endpoints (metrics, internals, profiling) "+
			"must not be open to the network: set admin-token-file (or %s) to require a bearer token, "+
			"or bind admin to 127.0.0.1", n.Admin, config.EnvAdminToken)
	}
	switch n.AdminPprof {
	case "on":
		a.pprof = true
	case "auto":
		a.pprof = a.loopback
	}
	return a, nil
}

// loopbackAddr reports whether host:port names a loopback address: a loopback IP or
// "localhost". An empty host (every interface) or any other name is not.
func loopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// guard wraps the server's admin handler: pprof answers 404 unless enabled, and with a
// token every request needs "Authorization: Bearer <token>" (401 otherwise, checked before
// anything else, compared in constant time).
func (a adminAccess) guard(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	if !a.pprof {
		mux.Handle("/debug/pprof/", http.NotFoundHandler())
	}
	if len(a.token) == 0 {
		return mux
	}
	// Comparing digests keeps the comparison constant-time in the token's length too.
	want := sha256.Sum256(a.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard admin"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// adminServer serves the admin HTTP endpoints on their own listener.
type adminServer struct {
	http *http.Server
	addr string
	done chan struct{} // closed when the serving goroutine has returned
	// served is what the endpoints serve: set before the listener starts, and swapped
	// once by serve when the admin listener started while the node was still joining its
	// cluster (startingHandler until then).
	served atomic.Pointer[http.Handler]
}

// ServeHTTP serves what a.served holds.
func (a *adminServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*a.served.Load()).ServeHTTP(w, r)
}

// serve makes the admin endpoints serve h and logs msgAdminListening: the endpoints are
// the node's from now on.
func (a *adminServer) serve(log *slog.Logger, access adminAccess, h http.Handler) {
	a.served.Store(&h)
	log.Info(msgAdminListening, "addr", a.addr, "token_required", len(access.token) > 0, "pprof", access.pprof)
}

// msgAdminListening is logged once the admin endpoints serve the running node (tests and
// scripts wait for it).
const msgAdminListening = "admin listening"

// startingHandler is what the admin endpoints serve while a cluster node joins its
// cluster (up to clusterStartTimeout: JetStream, the buckets, the names replay) before
// its client listener starts: /healthz 200, so that a liveness check does not restart a
// node that is only joining, and 503 for the rest, /readyz included, saying why.
func startingHandler() http.Handler {
	const why = "node starting: joining its cluster"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, why, http.StatusServiceUnavailable)
	})
	return mux
}

// startAdmin listens on addr and serves the admin endpoints on a tracked goroutine: handler,
// logged as msgAdminListening, or startingHandler until serve is called when handler is
// nil. If serving fails later, the error goes to failed (which must have room for one).
func startAdmin(log *slog.Logger, addr string, access adminAccess, handler http.Handler, failed chan<- error) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", addr, err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		// adminAccessFor made sure there is a token.
		log.Warn("admin endpoints are reachable from other hosts; every request needs the bearer token",
			"addr", ln.Addr().String(), "pprof", access.pprof)
	}
	a := &adminServer{addr: ln.Addr().String(), done: make(chan struct{})}
	a.http = &http.Server{
		Handler:           access.guard(a),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	starting := handler == nil
	if starting {
		handler = startingHandler()
	}
	a.served.Store(&handler)
	go func() {
		defer close(a.done)
		if err := a.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			failed <- err
		}
	}()
	if starting {
		log.Info("admin listening while the node joins its cluster", "addr", a.addr)
	} else {
		a.serve(log, access, handler)
	}
	return a, nil
}

// shutdown stops accepting, waits for requests in flight until ctx ends (then closes
// them), and returns once the serving goroutine has exited.
func (a *adminServer) shutdown(ctx context.Context) error {
	err := a.http.Shutdown(ctx)
	if err != nil {
		_ = a.http.Close()
	}
	<-a.done
	return err
}
