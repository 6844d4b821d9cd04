package deploy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/proxyproto"
	"github.com/switchboard/switchboard/internal/testserver"
	"github.com/switchboard/switchboard/internal/wait"
	"github.com/switchboard/switchboard/limits"
	"github.com/switchboard/switchboard/server"
)

const haproxyFile = "haproxy/haproxy.cfg"

// The values of haproxy.cfg that the test replaces.
const (
	haproxyBind    = "bind :7443 ssl crt /etc/haproxy/certs/switchboard.pem"
	haproxyServer  = "server node1 127.0.0.1:7400 send-proxy-v2"
	haproxyMaxConn = "maxconn 100000"
)

// haproxy returns haproxy's path; like promtool, it is skipped without it except in CI.
func haproxy(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("haproxy")
	if err == nil {
		return path
	}
	const how = "haproxy is the Debian package haproxy: run scripts/ci-deps.sh (apt-get install --no-install-recommends haproxy)"
	if inCI() {
		t.Fatalf("haproxy not found on PATH and CI is set: CI must install it. %s", how)
	}
	t.Skipf("haproxy not found on PATH; skipping the TLS edge test. %s", how)
	return ""
}

// testCert makes a self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost, and
// writes certificate and key, in that order, to one PEM file (HAProxy's crt format).
func testCert(t *testing.T) (pemFile string, pool *x509.CertPool, cert tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "switchboard test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	_ = pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	pemFile = filepath.Join(t.TempDir(), "switchboard.pem")
	if err := os.WriteFile(pemFile, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(c)
	cert, err = tls.X509KeyPair(buf.Bytes(), buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return pemFile, pool, cert
}

// renderHAProxy returns deploy/haproxy/haproxy.cfg with the test's listen port,
// certificate, switchboard address and a maxconn that needs no raised open-file limit.
func renderHAProxy(t *testing.T, port int, pemFile, backend string, maxconn int) string {
	t.Helper()
	data, err := os.ReadFile(haproxyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(data)
	for old, repl := range map[string]string{
		haproxyBind:    fmt.Sprintf("bind 127.0.0.1:%d ssl crt %s", port, pemFile),
		haproxyServer:  "server node1 " + backend + " send-proxy-v2",
		haproxyMaxConn: fmt.Sprintf("maxconn %d", maxconn),
	} {
		if strings.Count(cfg, old) != 1 {
			t.Fatalf("%s: want %q exactly once (the test replaces it)", haproxyFile, old)
		}
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	return cfg
}

// haproxyProc is a running haproxy.
type haproxyProc struct {
	cmd  *exec.Cmd
	addr string // TLS listener
	out  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startHAProxy checks the rendered configuration and starts haproxy in the foreground in
// front of backend. Its port is one the kernel just handed out and took back; if another
// process takes it meanwhile, haproxy fails to bind and the start is tried again on a new
// port.
func startHAProxy(t *testing.T, backend, pemFile string, maxconn int) *haproxyProc {
	t.Helper()
	bin := haproxy(t)
	dir := t.TempDir()
	var lastErr string
	for attempt := range 5 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		cfgFile := filepath.Join(dir, fmt.Sprintf("haproxy-%d.cfg", attempt))
		if err := os.WriteFile(cfgFile, []byte(renderHAProxy(t, port, pemFile, backend, maxconn)), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-c", "-f", cfgFile).CombinedOutput(); err != nil {
			t.Fatalf("haproxy -c rejects %s (rendered): %v\n%s", haproxyFile, err, out)
		}
		p := &haproxyProc{cmd: exec.Command(bin, "-db", "-f", cfgFile), addr: fmt.Sprintf("127.0.0.1:%d", port), out: &syncBuffer{}}
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(exited) }()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			select {
			case <-exited:
				lastErr = p.out.String()
			default:
				c, err := net.DialTimeout("tcp", p.addr, time.Second)
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				_ = c.Close()
				t.Cleanup(func() {
					_ = p.cmd.Process.Signal(syscall.SIGTERM)
					select {
					case <-exited:
					case <-time.After(5 * time.Second):
						_ = p.cmd.Process.Kill()
						<-exited
					}
				})
				return p
			}
			break
		}
		if lastErr == "" {
			_ = p.cmd.Process.Kill()
			<-exited
			lastErr = "not listening after 10s: " + p.out.String()
		}
	}
	t.Fatalf("haproxy did not start in 5 attempts; last: %s", lastErr)
	return nil
}

// edgeServer is a switchboard that trusts 127.0.0.1 (where the proxy connects from) for
// PROXY headers and allows one connection per client address.
func edgeServer(t *testing.T, perIP int) *server.Server {
	cfg := server.DefaultConfig()
	cfg.ProxyProtocolFrom = "127.0.0.1"
	cfg.Config = limits.DefaultConfig()
	cfg.MaxConnsPerIP = perIP
	return testserver.Start(t, cfg)
}

// TestHAProxyTLSEdge runs the Go client over TLS through haproxy, configured from
// deploy/haproxy/haproxy.cfg, to a switchboard that trusts haproxy's PROXY v2 headers.
func TestHAProxyTLSEdge(t *testing.T) {
	bin := haproxy(t)
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	t.Logf("%s", bytes.SplitN(out, []byte("\n"), 2)[0])
	srv := edgeServer(t, 1)
	pemFile, pool, _ := testCert(t)
	hp := startHAProxy(t, srv.Addr().String(), pemFile, 1024)
	checkEdge(t, srv, hp.addr, pool)
	if t.Failed() {
		t.Logf("haproxy output:\n%s", hp.out.String())
	}
}

// TestGoTLSEdge is TestHAProxyTLSEdge with a TLS terminator written in Go (which writes
// PROXY v2 headers with internal/proxyproto) in haproxy's place: the client's TLS and the
// server's PROXY handling are tested wherever haproxy is missing.
func TestGoTLSEdge(t *testing.T) {
	srv := edgeServer(t, 1)
	_, pool, cert := testCert(t)
	addr := goTerminator(t, srv.Addr().String(), cert)
	checkEdge(t, srv, addr, pool)

	// A certificate the client does not trust fails the dial, naming TLS.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := client.Dial(ctx, []string{addr}, client.Config{TLS: &tls.Config{}, NoReconnect: true})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) || !strings.Contains(err.Error(), "TLS handshake") {
		t.Fatalf("dial with an untrusted certificate: %v; want a TLS handshake error (unknown authority)", err)
	}
}

// checkEdge connects clients over TLS through the proxy at addr, from 127.0.0.2 and
// 127.0.0.3: a request and its reply cross, and the server's per-IP limit (1) counts the
// clients' addresses, not the proxy's: a second client from 127.0.0.2 is refused, the one
// from 127.0.0.3 is not.
func checkEdge(t *testing.T, srv *server.Server, addr string, pool *x509.CertPool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(from, name string, onReq func(*client.Request)) (*client.Client, error) {
		return client.Dial(ctx, []string{addr}, client.Config{
			Name:        name,
			TLS:         &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			Dialer:      &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}},
			NoReconnect: true,
			OnRequest:   onReq,
		})
	}
	responder, err := dial("127.0.0.2", "responder", func(r *client.Request) {
		_ = r.Reply(bytes.ToUpper(r.Payload))
	})
	if err != nil {
		t.Fatalf("dial from 127.0.0.2: %v", err)
	}
	defer responder.Close()
	if err := responder.Register(ctx, "upper"); err != nil {
		t.Fatal(err)
	}
	caller, err := dial("127.0.0.3", "caller", nil)
	if err != nil {
		t.Fatalf("dial from 127.0.0.3 (a second client address behind the proxy): %v", err)
	}
	defer caller.Close()
	got, err := caller.Request(ctx, "upper", []byte("over tls"))
	if err != nil || string(got) != "OVER TLS" {
		t.Fatalf("Request through the proxy = %q, %v; want OVER TLS", got, err)
	}
	if _, err := dial("127.0.0.2", "second", nil); !errors.Is(err, client.ErrBusy) || !strings.Contains(err.Error(), "too many connections from this address") {
		t.Fatalf("second client from 127.0.0.2: %v; want BUSY, too many connections from this address", err)
	}
	// haproxy's health checks (a PROXY v2 LOCAL connection every 5 s) come and go beside
	// the two clients: wait for the count to settle rather than read it once.
	wait.For(t, "the server to count the two clients", func() bool { return srv.Stats().Connections == 2 })
}

// goTerminator accepts TLS on 127.0.0.1:0 and relays each connection to backend behind a
// PROXY v2 header, as haproxy's send-proxy-v2 does. It stops when the test ends.
func goTerminator(t *testing.T, backend string, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		open = append(open, c)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				b, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				track(b)
				defer b.Close()
				src := c.RemoteAddr().(*net.TCPAddr).AddrPort()
				dst := c.LocalAddr().(*net.TCPAddr).AddrPort()
				hdr := proxyproto.AppendV2(nil, proxyproto.Proxy, addrPort4(src), addrPort4(dst), nil)
				if _, err := b.Write(hdr); err != nil {
					return
				}
				done := make(chan struct{})
				go func() { _, _ = io.Copy(c, b); close(done) }()
				_, _ = io.Copy(b, c)
				_ = b.(*net.TCPConn).CloseWrite()
				<-done
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func addrPort4(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// TestHAProxyMemory measures haproxy's resident memory with N idle TLS client
// connections (each welcomed by switchboard behind it) against none. It runs only when
// SWITCHBOARD_HAPROXY_MEMORY=N is set; docs/SECURITY.md reports its result:
//
//	SWITCHBOARD_HAPROXY_MEMORY=1000 go test -run TestHAProxyMemory -v ./deploy/
func TestHAProxyMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SWITCHBOARD_HAPROXY_MEMORY"))
	if n <= 0 {
		t.Skip("set SWITCHBOARD_HAPROXY_MEMORY=N to measure haproxy with N idle TLS connections")
	}
	srv := edgeServer(t, 0)
	pemFile, pool, _ := testCert(t)
	hp := startHAProxy(t, srv.Addr().String(), pemFile, 2*n+100)
	settle := func() int64 {
		time.Sleep(2 * time.Second)
		return rssKiB(t, hp.cmd.Process.Pid)
	}
	before := settle()
	conns := make([]*tls.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	hello := client.DefaultConfig() // only for its handshake timeout
	for i := range n {
		d := &net.Dialer{Timeout: 5 * time.Second,
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+i/250), byte(2+i%250))}}
		c, err := tls.DialWithDialer(d, "tcp", hp.addr, &tls.Config{RootCAs: pool})
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if err := welcome(c, hello.HandshakeTimeout); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	if got := srv.Stats().Connections; got != n {
		t.Fatalf("switchboard counts %d connections; want %d", got, n)
	}
	after := settle()
	t.Logf("haproxy RSS: %d KiB idle, %d KiB with %d TLS connections: %.1f KiB per connection",
		before, after, n, float64(after-before)/float64(n))
}

// welcome sends HELLO on c and waits for switchboard's first frame (WELCOME).
func welcome(c net.Conn, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := c.Write(codec.AppendHello(nil, 1, codec.Version, "idle", "")); err != nil {
		return err
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	n := int(hdr[0])<<24 | int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
	_, err := io.CopyN(io.Discard, c, int64(n))
	return err
}

// rssKiB reads VmRSS of a process.
func rssKiB(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
