package store

import (
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	pqzstd "github.com/parquet-go/parquet-go/compress/zstd"
)

// pageWindow is the zstd window of the pages we write: parquet-go
// compresses each page on its own and a page holds at most its page buffer
// (256 KiB by default), so a longer window finds no more matches. zstd's
// default window at this level is 8 MiB, and its encoder keeps twice that as
// history: 16 MiB for every page being compressed at once, a fixed cost a
// scan's memory budget per probe in flight pays for nothing.
const pageWindow = 256 << 10

// pageZstd is parquet-go's zstd codec (its name, format code and decoder)
// with encoders sized to a page. Files stay plain ZSTD parquet: any reader
// decodes them.
type pageZstd struct {
	pqzstd.Codec
	encoders sync.Pool
}

var pageCodec = &pageZstd{}

// Compression is the writer option of every Parquet file mxsurvey writes:
// the scan's parts and the analyzer's exports.
func Compression() parquet.WriterOption { return parquet.Compression(pageCodec) }

func (c *pageZstd) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.encoders.Get().(*zstd.Encoder)
	if e == nil {
		var err error
		e, err = zstd.NewWriter(nil,
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithWindowSize(pageWindow),
			zstd.WithLowerEncoderMem(true),
			zstd.WithZeroFrames(true),
			zstd.WithEncoderCRC(false),
		)
		if err != nil {
			return dst, err
		}
	}
	defer c.encoders.Put(e)
	return e.EncodeAll(src, dst[:0]), nil
}
