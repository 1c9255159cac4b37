package store

import (
	"github.com/mxsurvey/mxsurvey/datasets/survey"

	"path/filepath"
	"testing"
	"unicode/utf8"
)

func TestMakeValidUTF8(t *testing.T) {
	banner := "220 caf\xe9 \xff\xfe ok\x00\r\n"
	r := survey.ProbeRow{Banner: banner, EHLOReply: "250-x\xc3\x28\r\n", EHLOExtensions: []string{"SIZE 1", "X-\xff"},
		CertSubjectCN: "caf\xe9", BannerHost: "mx.example"}
	r.MakeValidUTF8()
	for name, s := range map[string]string{"banner": r.Banner, "ehlo_reply": r.EHLOReply, "ext": r.EHLOExtensions[1], "cn": r.CertSubjectCN} {
		if !utf8.ValidString(s) {
			t.Errorf("%s still invalid: %q", name, s)
		}
	}
	if string(r.BannerRaw) != banner {
		t.Errorf("banner_raw = %q, want the exact bytes", r.BannerRaw)
	}
	if r.Banner != "220 caf\uFFFD \uFFFD ok\x00\r\n" || r.EHLOExtensions[0] != "SIZE 1" || r.BannerHost != "mx.example" {
		t.Errorf("row = %+v", r)
	}
	ok := survey.ProbeRow{Banner: "220 mx.example ESMTP\r\n"}
	ok.MakeValidUTF8()
	if ok.BannerRaw != nil {
		t.Errorf("banner_raw set for a valid banner")
	}
	// Round trip through a part.
	dir := t.TempDir()
	w, _ := NewPartWriter[survey.ProbeRow](dir, PartOptions{})
	if err := w.Write([]survey.ProbeRow{r}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	parts, _ := Parts(dir)
	err := ReadPart(filepath.Clean(parts[0]), func(got *survey.ProbeRow) error {
		if string(got.BannerRaw) != banner || got.Banner != r.Banner {
			t.Errorf("read back %q / %q", got.Banner, got.BannerRaw)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
