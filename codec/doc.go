// Package codec defines switchboard's wire format: length-prefixed binary frames, their
// types, flags and error codes, and allocation-free encoders and decoders.
//
// Every frame is
//
//	u32 len | u8 type | u8 flags | u32 corr | body[len-6]
//
// with all integers big-endian. len counts the bytes after itself, so a frame occupies
// 4+len bytes. docs/PROTOCOL.md is the normative description; the golden vectors in
// testdata/ are checked by the tests.
//
// Decode cuts a frame out of a buffer someone else fills (the server's gnet inbound
// buffer). Reader cuts frames out of an io.Reader with a buffer of its own, for the
// client, the load generator and test peers: it checks each length prefix against the
// maximum before buffering the body and does not allocate per frame.
//
// # Concurrency
//
// The functions have no state and are safe for concurrent use on distinct buffers. A
// Reader belongs to one goroutine.
//
// # Caveats
//
// Decoded frames and parsed bodies alias the input buffer: their byte slices are valid
// only as long as that buffer is (for gnet, until Discard; for a Reader, until its next
// Next). Copy what must be kept. A Reader's buffer grows to the largest frame it has
// read and keeps that size.
// Append* functions write to dst and return the extended slice, like strconv.Append*.
package codec
