package cluster

import (
	"errors"
	"net"
	"syscall"
)

// linkFDFloor is the lowest descriptor a link's end may be moved to: linkFDRoom below
// the open-file limit (capped at linkFDCeiling). Client connections get the lowest free
// descriptors and the server caps them below the limit, so the links sit above them and
// the kernel closes them first when the process dies. 0: not moved.
func linkFDFloor() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	top := min(rl.Cur, linkFDCeiling)
	if top <= 2*linkFDRoom {
		return 0
	}
	return int(top) - linkFDRoom
}

// moveHigh duplicates c's socket to the lowest free descriptor at or above linkFDFloor
// (never one in use) and returns it; the caller then closes c, and the socket stays open
// through the new descriptor, which nobody polls.
func moveHigh(c net.Conn) (int, error) {
	floor := linkFDFloor()
	if floor == 0 {
		return -1, errors.New("open-file limit too low to move a link's descriptor")
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return -1, errors.New("not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, uintptr(floor))
		if e != 0 {
			derr = e
			return
		}
		nfd = int(r)
	}); err != nil {
		return -1, err
	}
	return nfd, derr
}

// peerClosed reports whether the other end of the socket fd closed it (EOF) or reset it:
// the link is dead. Nothing is ever sent on a link, so there is nothing to read otherwise.
func peerClosed(fd int) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == nil:
		return n == 0
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
		return false
	}
	return true
}
