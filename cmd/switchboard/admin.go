package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// adminServer serves the admin HTTP endpoints on their own listener.
type adminServer struct {
	http *http.Server
	done chan struct{} // closed when the serving goroutine has returned
}

// startAdmin listens on addr and serves the admin endpoints on a tracked goroutine. If
// serving fails later, the error goes to failed (which must have room for one).
func startAdmin(log *slog.Logger, addr string, handler http.Handler, failed chan<- error) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", addr, err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		log.Warn("admin endpoints are reachable from other hosts; bind --admin to a loopback address",
			"addr", ln.Addr().String())
	}
	a := &adminServer{
		http: &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(a.done)
		if err := a.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			failed <- err
		}
	}()
	log.Info("admin listening", "addr", ln.Addr().String())
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
