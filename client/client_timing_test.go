package client

import (
	"context"
	"testing"
)

// BenchmarkRequest measures pipelined request/response round trips through the fake server
// (which answers on the connection's goroutine): the client's matching, batching and copying.
func BenchmarkRequest(b *testing.B) {
	for _, size := range []int{16, 1024} {
		b.Run(sizeName(size), func(b *testing.B) {
			s := newFakeServer(b, nil)
			c, err := Dial(context.Background(), []string{s.addr}, Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			payload := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Request(context.Background(), "echo", payload); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func sizeName(n int) string {
	if n >= 1024 {
		return "1KiB"
	}
	return "16B"
}
