package client

import "strconv"

// State is a connection state reported to Config.OnStateChange.
type State uint8

const (
	// Connected: a connection is established and each registered name has been asked for
	// on it once; names the node could not decide yet (UNAVAILABLE, BUSY, no answer) are
	// still being asked for again, and NameLost follows for any that turn out lost.
	Connected State = iota + 1
	// Reconnecting: the connection was lost; calls wait for the next one.
	Reconnecting
	// Closed: Close was called, the connection was lost with Config.NoReconnect, or the
	// server closed it (or refused a reconnect) with an ERROR without RECONNECT.
	// Terminal: every call returns ErrClosed.
	Closed
	// NameLost is an event rather than a state: after a reconnect, at least one name could
	// not be registered again (another connection took it meanwhile). The name was removed
	// from the client's set (see Client.Names) and the logger has the details. It follows
	// Connected; Client.State reports Connected.
	NameLost
)

var stateNames = [...]string{Connected: "Connected", Reconnecting: "Reconnecting", Closed: "Closed", NameLost: "NameLost"}

// String returns the name of s.
func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}
