package domains

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

func BenchmarkReaderCSV(b *testing.B) {
	var buf bytes.Buffer
	for i := range 10_000 {
		fmt.Fprintf(&buf, "%d,domain-%d.example\n", i+1, i)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r, err := NewReader(bytes.NewReader(data), FormatAuto)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkNormalize(b *testing.B) {
	for _, s := range []string{"www.Example.com", "bücher.example"} {
		b.Run(s, func(b *testing.B) {
			for b.Loop() {
				if _, err := Normalize(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
