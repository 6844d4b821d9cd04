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
// # Concurrency
//
// The package has no state. Every function is safe for concurrent use on distinct
// buffers.
//
// # Caveats
//
// Decoded frames and parsed bodies alias the input buffer: their byte slices are valid
// only as long as that buffer is (for gnet, until Discard). Copy what must be kept.
// Append* functions write to dst and return the extended slice, like strconv.Append*.
package codec
