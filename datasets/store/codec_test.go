package store

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"testing"

	pqzstd "github.com/parquet-go/parquet-go/compress/zstd"
)

// page is a page's worth of text that compresses like a column of host
// names.
func page(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString("mx")
		b.WriteByte(byte('0' + r.IntN(10)))
		b.WriteString(".provider-")
		b.WriteByte(byte('a' + r.IntN(26)))
		b.WriteString(".test")
	}
	return b.Bytes()[:n]
}

func TestPageCodecRoundTrip(t *testing.T) {
	var plain pqzstd.Codec
	for _, n := range []int{0, 1, 1000, 128 << 10, pageWindow, 3 * pageWindow} {
		src := page(n)
		enc, err := pageCodec.Encode(nil, src)
		if err != nil {
			t.Fatal(err)
		}
		// parquet-go's own codec reads it: the files stay plain ZSTD.
		got, err := plain.Decode(nil, enc)
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("%d bytes: round trip lost data (err %v)", n, err)
		}
		if n > 1000 && len(enc) > n/2 {
			t.Errorf("%d bytes compressed to %d: not compressed", n, len(enc))
		}
	}
}

// A fresh encoder compressing one page allocates about its window, not
// the 16 MiB of history parquet-go's default codec allocates.
func TestPageCodecMemory(t *testing.T) {
	src := page(pageWindow)
	measure := func(encode func() error) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if err := encode(); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	ours := measure(func() error { _, err := (&pageZstd{}).Encode(nil, src); return err })
	theirs := measure(func() error { _, err := (&pqzstd.Codec{}).Encode(nil, src); return err })
	t.Logf("first page: %d KiB allocated, parquet-go's default codec %d KiB", ours>>10, theirs>>10)
	if ours > 4<<20 {
		t.Errorf("a fresh encoder allocated %d KiB for one page; want under 4 MiB", ours>>10)
	}
	if ours*4 > theirs {
		t.Errorf("%d KiB is not well under the default codec's %d KiB", ours>>10, theirs>>10)
	}
}

// BenchmarkPageCodec compares the page-window codec with parquet-go's
// default on a page, each with a warm encoder (go test -bench PageCodec).
func BenchmarkPageCodec(b *testing.B) {
	src := page(pageWindow)
	for _, c := range []struct {
		name  string
		codec interface {
			Encode(dst, src []byte) ([]byte, error)
		}
	}{{"page-window", &pageZstd{}}, {"parquet-go-default", &pqzstd.Codec{}}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			var dst []byte
			for b.Loop() {
				var err error
				if dst, err = c.codec.Encode(dst, src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
