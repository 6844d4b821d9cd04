package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at link time, e.g. go build -ldflags "-X main.version=v1.2.0 -X main.commit=abc1234".
// Empty means: take them from the build information, if any.
var (
	version string
	commit  string
)

func runVersion(c *cli, args []string) int {
	fs := newFlags("version", "switchboard version", "Prints the version, the commit and the Go version.")
	if code, done := parseFlags(c, fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Fail(c.stderr, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
		return exitUsage
	}
	v, rev := buildVersion()
	fmt.Fprintf(c.stdout, "switchboard %s\ncommit %s\n%s %s/%s\n", v, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// buildVersion returns the version and commit: the link-time values if set, else what
// the Go toolchain recorded (module version; vcs.revision, vcs.time, vcs.modified).
func buildVersion() (ver, rev string) {
	ver, rev = version, commit
	bi, ok := debug.ReadBuildInfo()
	if ver == "" && ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		ver = bi.Main.Version
	}
	if rev == "" && ok {
		var when, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if rev != "" {
			rev += dirty
			if when != "" {
				rev += " (" + when + ")"
			}
		}
	}
	if ver == "" {
		ver = "dev"
	}
	if rev == "" {
		rev = "unknown"
	}
	return ver, rev
}
