package server

import "errors"

var (
	// ErrServerClosed is returned by Start after Shutdown, and by Serve once Shutdown has
	// finished.
	ErrServerClosed = errors.New("server: closed")
	// ErrAlreadyStarted is returned by a second Start.
	ErrAlreadyStarted = errors.New("server: already started")
	// ErrNotTCP is returned by StartListener and Serve for a listener that is not TCP.
	ErrNotTCP = errors.New("server: listener is not a TCP listener")
	// ErrNoFileDescriptors means the open-file limit leaves no room for any connection.
	ErrNoFileDescriptors = errors.New("server: open-file limit too low to serve connections")
	// ErrTokenAndCredentials is returned by New when both a shared token and credentials
	// are given: a node authenticates one way.
	ErrTokenAndCredentials = errors.New("server: set a token or credentials, not both")
	// ErrNoCredentials is returned by ReloadCredentials on a server started without
	// credentials, or for nil credentials.
	ErrNoCredentials = errors.New("server: credentials were not configured at start")
)
