package main

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
)

// TestFloodPastOpenFileLimit runs the server with a 300-descriptor limit and opens twice
// that many connections at once. The server must stay up, refuse the excess with BUSY
// (never hit EMFILE in a way that stops it) and keep serving the connections it holds.
func TestFloodPastOpenFileLimit(t *testing.T) {
	// A loop-lag budget of an hour keeps a loaded machine's loop lag from refusing
	// connections, so the counts below are exact.
	p := startBinNoFile(t, 300, nil, "serve", "--listen", "127.0.0.1:0", "--admin", "off", "--log-format", "json",
		"--loop-lag-budget", "1h")
	line := p.waitLine(t, `"msg":"switchboard listening"`)
	var rec struct {
		Addr    string `json:"addr"`
		MaxConn int    `json:"max_connections"`
		NoFile  int    `json:"nofile"`
	}
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.NoFile != 300 || rec.MaxConn <= 0 || rec.MaxConn >= 300 {
		t.Fatalf("nofile %d max_connections %d; want 300 and a cap below it", rec.NoFile, rec.MaxConn)
	}
	hello := codec.AppendHello(nil, 1, codec.Version, "flood", "")
	first, err := net.Dial("tcp", rec.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := first.Write(hello); err != nil {
		t.Fatal(err)
	}
	readType := func(c net.Conn, d time.Duration) (codec.Type, codec.ErrorCode) {
		_ = c.SetReadDeadline(time.Now().Add(d))
		var hdr [codec.HeaderLen + 2]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return 0, 0
		}
		n, _ := codec.FrameLen(hdr[:], 1<<20)
		rest := make([]byte, n-len(hdr))
		_, _ = io.ReadFull(c, rest)
		return codec.Type(hdr[4]), codec.ErrorCode(uint16(hdr[10])<<8 | uint16(hdr[11]))
	}
	if typ, _ := readType(first, 5*time.Second); typ != codec.TypeWelcome {
		t.Fatalf("first connection got %v; want WELCOME", typ)
	}

	const flood = 600
	conns := make([]net.Conn, 0, flood)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range flood {
		c, err := net.DialTimeout("tcp", rec.Addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		_, _ = c.Write(hello)
		conns = append(conns, c)
	}
	welcomed, busy := 0, 0
	results := make(chan [2]int, flood)
	for _, c := range conns {
		go func() {
			typ, code := readType(c, 30*time.Second) // every connection is answered: wait for it
			results <- [2]int{int(typ), int(code)}
		}()
	}
	for range conns {
		r := <-results
		switch {
		case codec.Type(r[0]) == codec.TypeWelcome:
			welcomed++
		case codec.Type(r[0]) == codec.TypeError && codec.ErrorCode(r[1]) == codec.CodeBusy:
			busy++
		}
	}
	t.Logf("welcomed %d, busy %d, unanswered %d", welcomed, busy, flood-welcomed-busy)
	// The first connection holds one slot; the cap admits the rest up to it, and every
	// other connection is told BUSY.
	if welcomed != rec.MaxConn-1 || busy != flood-welcomed {
		t.Fatalf("%d welcomed, %d BUSY of %d; want %d and %d", welcomed, busy, flood, rec.MaxConn-1, flood-(rec.MaxConn-1))
	}
	// The node is alive and the first connection still works (PING is a control frame,
	// served even in the RED zone a full node is in).
	if _, err := first.Write(codec.AppendFrame(nil, codec.TypePing, 0, 9, []byte{1, 2}) /* readType reads 12 bytes */); err != nil {
		t.Fatal(err)
	}
	if typ, _ := readType(first, 5*time.Second); typ != codec.TypePong {
		t.Fatalf("first connection got %v after the flood; want PONG; stderr:\n%s", typ, p.stderr())
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d after the flood; stderr:\n%s", code, p.stderr())
	}
}

// TestServeDrainsOnSIGTERM: SIGTERM sends GOAWAY, closes the connection within the drain
// period and exits 0.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	p := startBin(t, nil, "serve", "--listen", "127.0.0.1:0", "--admin", "off", "--log-format", "json",
		"--drain-period", "300ms", "--peers", "127.0.0.1:1")
	var rec struct {
		Addr string `json:"addr"`
	}
	if err := json.Unmarshal([]byte(p.waitLine(t, `"msg":"switchboard listening"`)), &rec); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", rec.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(codec.AppendHello(nil, 1, codec.Version, "x", ""))
	read := func() codec.Frame {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var hdr [codec.HeaderLen]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			t.Fatalf("read: %v", err)
		}
		n, _ := codec.FrameLen(hdr[:], 1<<20)
		buf := append(hdr[:], make([]byte, n-codec.HeaderLen)...)
		if _, err := io.ReadFull(c, buf[codec.HeaderLen:]); err != nil {
			t.Fatalf("read: %v", err)
		}
		f, _, _ := codec.Decode(buf, 1<<20)
		return f
	}
	if f := read(); f.Type != codec.TypeWelcome {
		t.Fatalf("got %v; want WELCOME", f.Type)
	}
	p.signal(t, syscall.SIGTERM)
	f := read()
	if f.Type != codec.TypeGoAway {
		t.Fatalf("got %v; want GOAWAY", f.Type)
	}
	if g, err := codec.ParseGoAway(f.Body); err != nil || len(g.Addrs) != 1 || g.Addrs[0] != "127.0.0.1:1" {
		t.Fatalf("GOAWAY %+v %v; want the peer address", g, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after the drain")
	}
	p.waitLine(t, `"msg":"drained"`)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr())
	}
}

// TestServeReloadsOnSIGHUP: SIGHUP re-reads the config file, applies the new log level
// (debug lines start to appear) and names the changes that wait for a restart.
func TestServeReloadsOnSIGHUP(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sb.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("log-level: info\nlisten: 127.0.0.1:0\nadmin: \"off\"\n")
	p := startBin(t, nil, "serve", "--config", file)
	p.waitLine(t, "switchboard listening")
	write("log-level: debug\nlisten: 127.0.0.1:0\nadmin: \"off\"\nmax-pending: 7\nconn-msg-rate: 100\n")
	p.signal(t, syscall.SIGHUP)
	p.waitLine(t, "limits reloaded")
	line := p.waitLine(t, "configuration reloaded")
	// applied lists keys in Fields order: the server's settings, then the node's own.
	if !strings.Contains(line, "log_level=debug") || !strings.Contains(line, "applied=conn-msg-rate,log-level") ||
		!strings.Contains(line, "not_applied_until_restart=max-pending") {
		t.Fatalf("reload line %q", line)
	}
	p.signal(t, syscall.SIGINT)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr())
	}
}
