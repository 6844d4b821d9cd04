// Package deploy holds no code: it is the home of switchboard's deployment files and of
// the tests that keep them honest.
//
//	switchboard.service          systemd unit: LimitNOFILE=1048576, the profile in an
//	                             EnvironmentFile, drain on SIGTERM, hardening
//	switchboard.env              example of that EnvironmentFile
//	sysctl.d/90-switchboard.conf kernel settings for 100K+ connections, one comment each
//	prometheus/alerts.yml        alerting rules, each with a runbook_url into
//	                             docs/RUNBOOKS.md
//	prometheus/alerts_test.yml   promtool unit tests: every alert fires and stays quiet
//	haproxy/haproxy.cfg          TLS termination in front of switchboard, PROXY v2 to it
//	grafana/switchboard.json     Grafana dashboard (import it; pick the Prometheus data
//	                             source): zone, connections vs capacity, frames by type,
//	                             errors by code, request latency, memory vs GOMEMLIMIT,
//	                             GC, slow consumers, refusals by reason
//
// The tests run promtool check rules and promtool test rules (promtool comes with the
// Debian package prometheus; scripts/ci-deps.sh installs it; without it the tests skip,
// except under CI, where they fail), check every metric an alert or a dashboard panel
// uses (and the labels they match or group by) against a scrape of a real server, every
// runbook_url against a heading of docs/RUNBOOKS.md, every variable of the env file
// against the config settings, and the sysctl file and the unit's
// LimitNOFILE against what switchboard tune check asks for. haproxy_test.go runs
// haproxy/haproxy.cfg (ports and a certificate made by the test filled in) in front of an
// in-process server that trusts it for PROXY headers, and the Go client over TLS through
// it (haproxy is the Debian package haproxy, installed by scripts/ci-deps.sh; skipped
// without it, except under CI); the same checks run through a TLS terminator written in
// Go, so they run everywhere.
//
// # Concurrency
//
// Nothing to share: the package has no exported identifiers.
//
// # Caveats
//
// The unit's hardening options cannot be exercised here (no systemd in the test
// environment); `systemd-analyze verify deploy/switchboard.service` checks its syntax on
// a systemd host.
package deploy
