package server

import (
	"net"
	"reflect"
	"sync/atomic"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
)

// Per-connection addresses gnet keeps for nothing.
//
// We accept on our own goroutine and hand each socket to gnet with EnrollContext
// (accept.go says why). Go's accept makes two *net.TCPAddr (48 B each), each pinning the
// 32-byte sockaddr its IP slice points into; EnrollContext keeps both as the connection's
// LocalAddr and RemoteAddr, adds a unix.Sockaddr of its own (32 B, used only to answer UDP
// peers) and boxes the context a second time for SafeContext (16 B). That is ~210 B of
// live heap per idle connection, a quarter of the total, for values switchboard never
// reads: the address that matters is conn.ip (17 bytes inline in conn, formatted only
// when logged), which the PROXY protocol may also have replaced.
//
// gnet offers no option to skip them, so OnOpen clears those four fields of gnet's
// connection object and the garbage collector takes the objects. The fields are found
// by name and type when the server starts (gnetLayout); if a gnet upgrade renames or
// retypes any of them, nothing is cleared, Start logs it, and TestGnetLayout fails. After
// the clearing, gnet.Conn's LocalAddr and RemoteAddr return nil: use conn.ip.

// gnetLayout is where the fields cleared by dropAddrs sit in gnet's connection object.
// Immutable after Start.
type gnetLayout struct {
	typ reflect.Type // *gnet.conn, the dynamic type of gnet.Conn
	// Offsets of localAddr, remoteAddr (net.Addr), remote (unix.Sockaddr) and safeCtx
	// (atomic.Pointer[any]).
	local, remote, sockaddr, safeCtx uintptr
	sockaddrType                     reflect.Type
	ok                               bool
}

// gnetLayoutOf finds the fields in the dynamic type of gc. It reports ok false, and
// dropAddrs does nothing, unless every field has the name and type it expects.
func gnetLayoutOf(gc gnet.Conn) gnetLayout {
	t := reflect.TypeOf(gc)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return gnetLayout{}
	}
	st := t.Elem()
	field := func(name string, want reflect.Type) (uintptr, bool) {
		f, ok := st.FieldByName(name)
		if !ok || len(f.Index) != 1 || (want != nil && f.Type != want) {
			return 0, false
		}
		return f.Offset, true
	}
	l := gnetLayout{typ: t}
	addr := reflect.TypeFor[net.Addr]()
	var ok1, ok2, ok3, ok4 bool
	l.local, ok1 = field("localAddr", addr)
	l.remote, ok2 = field("remoteAddr", addr)
	l.safeCtx, ok3 = field("safeCtx", reflect.TypeFor[atomic.Pointer[any]]())
	if f, ok := st.FieldByName("remote"); ok && len(f.Index) == 1 && f.Type.Kind() == reflect.Interface &&
		f.Type.PkgPath() == "golang.org/x/sys/unix" && f.Type.Name() == "Sockaddr" {
		l.sockaddr, l.sockaddrType, ok4 = f.Offset, f.Type, true
	}
	l.ok = ok1 && ok2 && ok3 && ok4
	return l
}

// dropAddrs clears the addresses and the SafeContext box gnet keeps for a TCP connection
// (see the top of this file). gnet reads none of them again for a TCP connection: they
// back LocalAddr, RemoteAddr and SafeContext, and the sockaddr is for UDP replies. Owning
// loop only, in OnOpen.
func (l *gnetLayout) dropAddrs(gc gnet.Conn) {
	if !l.ok || reflect.TypeOf(gc) != l.typ {
		return
	}
	p := reflect.ValueOf(gc).UnsafePointer()
	*(*net.Addr)(unsafe.Add(p, l.local)) = nil
	*(*net.Addr)(unsafe.Add(p, l.remote)) = nil
	(*atomic.Pointer[any])(unsafe.Add(p, l.safeCtx)).Store(nil)
	reflect.NewAt(l.sockaddrType, unsafe.Add(p, l.sockaddr)).Elem().SetZero()
}
