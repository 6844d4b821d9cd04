package server

import "errors"

var (
	// ErrServerClosed is returned by Serve and Start after Shutdown.
	ErrServerClosed = errors.New("server: closed")
	// ErrAlreadyStarted is returned by a second Start.
	ErrAlreadyStarted = errors.New("server: already started")
	// ErrNoFileDescriptors means the open-file limit leaves no room for any connection.
	ErrNoFileDescriptors = errors.New("server: open-file limit too low to serve connections")
)
