package limits

// FDReserve returns how many file descriptors a server with the given open-file limit keeps
// for itself beyond client connections: listeners, epoll and event fds of each event loop,
// the transient duplicates made while connections are handed to their loops (one per
// enroller, server/accept.go), the admin listener and its clients, log files. It is 128
// plus 1% of the limit.
func FDReserve(nofile uint64) uint64 {
	return 128 + nofile/100
}

// MaxConnections returns the connection cap for a process whose open-file limit is nofile.
// requested <= 0 means "as many as the limit allows". The result is never above
// nofile-FDReserve(nofile), because accept() failing with EMFILE must never happen: gnet
// stops its engine on accept errors, and a refused client deserves an ERROR frame, which
// needs a descriptor. It returns 0 when nofile is too small to serve anyone.
func MaxConnections(requested int, nofile uint64) (limit int, capped bool) {
	reserve := FDReserve(nofile)
	if nofile <= reserve {
		return 0, requested != 0
	}
	ceiling := nofile - reserve
	const maxInt = int(^uint(0) >> 1)
	if ceiling > uint64(maxInt) {
		ceiling = uint64(maxInt)
	}
	if requested <= 0 {
		return int(ceiling), false
	}
	if uint64(requested) > ceiling {
		return int(ceiling), true
	}
	return requested, false
}
