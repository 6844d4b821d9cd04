package server

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
)

// AdminHandler returns the admin HTTP endpoints. Serve it on a separate, loopback-only
// address (cmd/switchboard does, on --admin): it exposes profiling and internals.
//
//	/metrics        Prometheus text: switchboard_* plus Go and process metrics
//	/healthz        200 while the process runs
//	/readyz         200 when accepting work; 503 while draining, in admission zone RED, at the connection cap, or while the directory cannot answer
//	/zone           JSON: zone, each utilisation input, thresholds
//	/capacity       JSON: headroom in connections, queue slots, memory, accept tokens
//	/debug/pprof/   the standard profiles; cmdline with secret flags redacted
//
// Safe for concurrent use.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.WritePrometheus(w)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := s.Ready(); !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /zone", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, s.ZoneReport())
	})
	mux.HandleFunc("GET /capacity", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, s.Capacity())
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", cmdline) // pprof.Cmdline would show a --token value
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// ReadyReporter is implemented by a directory that can be unable to answer (a
// cluster-wide one whose arbiter is out of reach); Server.Ready consults it.
type ReadyReporter interface {
	// Ready reports whether the directory answers, and if not, why. Safe for concurrent
	// use; it must not block.
	Ready() (bool, string)
}

// Ready reports whether the node takes new connections, and if not, why: it is not ready
// when a new connection would be refused for a node-wide reason (draining, the
// admission zone RED, the connection cap reached) or when its directory (a
// ReadyReporter) cannot answer.
func (s *Server) Ready() (bool, string) {
	s.mu.Lock()
	started, closed := s.started, s.closed
	s.mu.Unlock()
	switch {
	case !started:
		return false, "not started"
	case closed || s.draining.Load():
		return false, "draining"
	case s.overloaded():
		return false, "zone RED: overloaded"
	case s.connCount.Load() >= int64(s.maxConns):
		return false, "connection limit reached"
	}
	if r, ok := s.dir.(ReadyReporter); ok {
		if ok, why := r.Ready(); !ok {
			return false, "directory: " + why
		}
	}
	return true, ""
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
