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
)
