package store

import (
	"testing"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// The writer makes every row valid UTF-8, whoever built the row: a part
// written from raw server text reads back valid, with the greeting's exact
// bytes in banner_raw.
func TestWriteMakesValidUTF8(t *testing.T) {
	banner := "220 caf\xe9 \xff\xfe ok\x00\r\n"
	dir := t.TempDir()
	w, err := NewPartWriter[survey.ProbeRow](dir, PartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write([]survey.ProbeRow{{Banner: banner, EHLOExtensions: []string{"X-\xff"}}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	err = ReadAll(dir, func(got *survey.ProbeRow) error {
		n++
		if string(got.BannerRaw) != banner || got.Banner != "220 caf\uFFFD \uFFFD ok\x00\r\n" || got.EHLOExtensions[0] != "X-\uFFFD" {
			t.Errorf("read back %q / %q / %q", got.Banner, got.BannerRaw, got.EHLOExtensions)
		}
		return nil
	})
	if err != nil || n != 1 {
		t.Fatalf("read %d rows: %v", n, err)
	}
}
