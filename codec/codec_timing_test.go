package codec_test

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/codec"
)

// Baseline: go1.26.8, linux/amd64, AMD EPYC, 2 vCPU, -benchtime 200ms, all 0 allocs/op.
//
//	Decode (+ParseMessage)  0B 8.8 ns   64B 11.6 ns   1KiB 15.8 ns   16KiB 13.9 ns
//	AppendMessage           0B 13.6 ns  64B 12.8 ns   1KiB 29.8 ns   16KiB 294 ns
//	AppendError             plain 14.3 ns   2 addrs 15.2 ns
//	Reader.Next             frame=64B 5.7 ns   frame=4KiB 69 ns (Turin-like 2 vCPU; most of
//	                        the 4 KiB time is the test source copying into the buffer)
//
// Decode does not copy or scan the payload, so its time is flat and its MB/s only says
// how many frame bytes per second it can cut. Compare changes with
// `go test -run '^$' -bench . -count 10 ./codec > new.txt; benchstat old.txt new.txt`.

func BenchmarkDecode(b *testing.B) {
	for _, size := range []int{0, 64, 1024, 16384} {
		frame := codec.AppendMessage(nil, bobConn, []byte("bob"), make([]byte, size))
		b.Run(benchSize(size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				f, _, err := codec.Decode(frame, 0)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, _, err := codec.ParseMessage(f.Body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendMessage(b *testing.B) {
	for _, size := range []int{0, 64, 1024, 16384} {
		payload := make([]byte, size)
		from := []byte("alice")
		buf := make([]byte, 0, codec.HeaderLen+8+1+len(from)+size)
		b.Run(benchSize(size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(cap(buf)))
			for b.Loop() {
				buf = codec.AppendMessage(buf[:0], aliceConn, from, payload)
			}
		})
	}
}

func BenchmarkAppendError(b *testing.B) {
	tests := []struct {
		name string
		e    codec.ErrorBody
	}{
		{"plain", codec.ErrorBody{Code: codec.CodeQueueFull, RetryAfterMs: 250, Reason: "target queue full"}},
		{"addrs", errorBusy},
	}
	for _, tt := range tests {
		buf := codec.AppendError(nil, 1, tt.e)
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				buf = codec.AppendError(buf[:0], 1, tt.e)
			}
		})
	}
}

func benchSize(n int) string {
	if n >= 1024 {
		return "payload=" + strconv.Itoa(n/1024) + "KiB"
	}
	return "payload=" + strconv.Itoa(n) + "B"
}

// BenchmarkReader cuts frames of a whole size (header included) out of a source that
// always has data, as a busy connection does; it measures the Reader's buffer handling
// and Decode, not a syscall.
func BenchmarkReader(b *testing.B) {
	for _, size := range []int{64, 4096} {
		frame := codec.AppendFrame(nil, codec.TypeEchoReply, 0, 1, make([]byte, size-codec.HeaderLen))
		b.Run("frame="+strings.TrimPrefix(benchSize(size), "payload="), func(b *testing.B) {
			fr := codec.NewReader(&loopReader{b: bytes.Repeat(frame, 16)}, 0, 0)
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, err := fr.Next(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
