// Package proxyproto parses and writes the PROXY protocol header (versions 1 and 2) that
// a TCP proxy such as HAProxy sends before a client's bytes, to tell the server whom the
// connection is really from. Specification:
// https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt
//
// Parse decides on at most MaxPeek bytes, so a server can peek at the socket (MSG_PEEK)
// into a fixed buffer, parse, and then read exactly the header's length: the bytes after
// the header stay in the socket for whoever reads the connection next.
//
// # Concurrency
//
// The package has no state; every function is safe for concurrent use.
//
// # Caveats
//
// A version 2 header's TLVs (after the addresses) are not returned: Parse reports the
// header's whole length, TLVs included, and the caller skips them. A version 2 header of
// the UNIX family, or of AF_UNSPEC, carries no IP addresses: Source and Dest are zero.
package proxyproto
