package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/server"
)

// TestClientTLSFlags: --tls, --tls-ca and --tls-server-name become the client's TLS
// configuration; mistakes are usage errors.
func TestClientTLSFlags(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, selfSignedPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		wantErr string // "" = valid
		wantTLS bool
	}{
		{"plain", nil, "", false},
		{"tls", []string{"--tls"}, "", true},
		{"ca implies tls", []string{"--tls-ca", caFile, "--tls-server-name", "edge"}, "", true},
		{"name without tls", []string{"--tls-server-name", "edge"}, "--tls-server-name: needs --tls", false},
		{"missing ca", []string{"--tls-ca", filepath.Join(dir, "none.pem")}, "--tls-ca", false},
		{"junk ca", []string{"--tls-ca", junk}, "no PEM certificate", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFlags("request", "", "")
			f := addClientFlags(fs)
			if code, done := fs.Parse(tt.args, io.Discard, io.Discard); done {
				t.Fatalf("Parse stopped with exit %d", code)
			}
			setup, err := f.resolve(fs, nil, "t")
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("resolve = %v; want an error with %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case (setup.cfg.TLS != nil) != tt.wantTLS:
				t.Fatalf("TLS config %v; want set = %v", setup.cfg.TLS, tt.wantTLS)
			case tt.name == "ca implies tls" && (setup.cfg.TLS.RootCAs == nil || setup.cfg.TLS.ServerName != "edge"):
				t.Fatalf("TLS config %+v; want the CA pool and server name edge", setup.cfg.TLS)
			}
		})
	}
}

// TestTopAdminToken: top sends the admin bearer token from the environment or a file;
// without it a node that requires one cannot be scraped.
func TestTopAdminToken(t *testing.T) {
	const token = "s3cret-admin"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/metrics":
			_, _ = w.Write([]byte("switchboard_connections 3\n"))
		case "/zone":
			_ = json.NewEncoder(w).Encode(server.ZoneReport{})
		}
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"top", "--admin", srv.URL, "--count", "1", "--interval", "10ms"}
	if out, stderr, code := runCLI(t, nil, args...); code != 1 || !strings.Contains(out+stderr, "401") {
		t.Fatalf("top without a token: exit %d, output %q %q; want 1 and the 401", code, out, stderr)
	}
	if out, stderr, code := runCLI(t, []string{config.EnvAdminToken + "=" + token}, args...); code != 0 {
		t.Fatalf("top with the token in the environment: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := runCLI(t, nil, append(args, "--admin-token-file", tokenFile)...); code != 0 {
		t.Fatalf("top with --admin-token-file: exit %d\n%s%s", code, out, stderr)
	}
}

func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edge"},
		DNSNames: []string{"edge"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
