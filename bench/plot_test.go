package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlots(t *testing.T) {
	res := &Result{Scenario: "echo", Series: []Point{{0, 1000, 50, 90}, {1, 1200, 55, 120}, {2, 900, 60, 300}}}
	dir := t.TempDir()
	svg := filepath.Join(dir, "p.svg")
	if err := writePlot(svg, res); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(svg)
	if !bytes.HasPrefix(b, []byte("<svg")) || strings.Count(string(b), "<polyline") != 3 {
		t.Fatalf("SVG lacks its three lines:\n%s", b)
	}
	if err := writePlot(filepath.Join(dir, "empty.svg"), &Result{}); err != nil {
		t.Fatalf("empty series: %v", err)
	}
}
