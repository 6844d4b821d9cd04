package server

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/codec"
)

// scrape fetches /metrics through the admin handler and returns every sample by its full
// name (labels included).
func scrape(t *testing.T, s *Server) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	s.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics = %d", rec.Code)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(rec.Body.Bytes()))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		m[line[:i]] = v
	}
	return m
}

// TestMetricsMoveWithTraffic scrapes /metrics before and after traffic and checks that
// the counters for what happened moved by exactly that much.
func TestMetricsMoveWithTraffic(t *testing.T) {
	s := startServer(t, Config{})
	before := scrape(t, s)
	svc := registered(t, s, "svc")
	c := connect(t, s, "c")
	for i := 1; i <= 5; i++ {
		c.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, uint32(i), []byte("x")))
		c.Expect(codec.TypeEchoReply)
	}
	c.Write(codec.AppendSend(nil, codec.FlagAck, 10, "svc", []byte("m")))
	c.Expect(codec.TypeOK)
	svc.Expect(codec.TypeMessage)
	c.Write(codec.AppendSend(nil, codec.FlagAck, 11, "nobody", nil))
	c.ExpectError(codec.CodeNoRoute)
	c.Write(codec.AppendRequest(nil, 12, "svc", 0, []byte("q")))
	respondOnce(t, svc)
	c.Expect(codec.TypeResponse)

	after := scrape(t, s)
	moved := func(name string) float64 { return after[name] - before[name] }
	for name, want := range map[string]float64{
		`switchboard_frames_in_total{type="ECHO"}`:               5,
		`switchboard_frames_in_total{type="HELLO"}`:              2,
		`switchboard_frames_in_total{type="SEND"}`:               2,
		`switchboard_frames_in_total{type="REQUEST"}`:            1,
		`switchboard_frames_in_total{type="REPLY"}`:              1,
		`switchboard_connections_accepted_total`:                 2,
		`switchboard_messages_sent_total`:                        1,
		`switchboard_no_route_total`:                             1,
		`switchboard_errors_total{code="NO_ROUTE"}`:              1,
		`switchboard_requests_total`:                             1,
		`switchboard_responses_total`:                            1,
		`switchboard_request_duration_seconds_count`:             1,
		`switchboard_request_duration_seconds_bucket{le="+Inf"}`: 1,
		// svc: WELCOME, OK, MESSAGE, INCOMING; c: WELCOME, 5 ECHO_REPLY, OK, ERROR, RESPONSE
		`switchboard_frames_out_total`: 13,
	} {
		if got := moved(name); got != want {
			t.Errorf("%s moved by %v; want %v", name, got, want)
		}
	}
	if after["switchboard_connections"] != 2 || after["switchboard_registry_names"] != 1 {
		t.Errorf("connections %v names %v; want 2, 1", after["switchboard_connections"], after["switchboard_registry_names"])
	}
	if after["switchboard_bytes_in_total"] <= before["switchboard_bytes_in_total"] ||
		after["switchboard_bytes_out_total"] <= before["switchboard_bytes_out_total"] {
		t.Error("byte counters did not move")
	}
	if after["process_resident_memory_bytes"] == 0 {
		t.Error("no process_resident_memory_bytes")
	}
}

func TestAdminEndpoints(t *testing.T) {
	s := startServer(t, Config{})
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		s.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		body, _ := io.ReadAll(rec.Body)
		return rec.Code, string(body)
	}
	for _, tt := range []struct {
		path, want string
		code       int
	}{
		{"/healthz", "ok", 200},
		{"/readyz", "ready", 200},
		{"/zone", `"traffic_zone": "GREEN"`, 200},
		{"/capacity", `"queue_slots"`, 200},
	} {
		code, body := get(tt.path)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s = %d %q; want %d containing %q", tt.path, code, body, tt.code, tt.want)
		}
	}
	s.draining.Store(true)
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining = %d %q; want 503 draining", code, body)
	}
	s.draining.Store(false)
}
