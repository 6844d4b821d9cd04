// Package e2e holds end-to-end tests: the real server and the Go client over loopback.
// It has no non-test code.
package e2e
