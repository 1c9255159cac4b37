package survey

import (
	"testing"
	"unicode/utf8"
)

func TestMakeValidUTF8(t *testing.T) {
	banner := "220 caf\xe9 \xff\xfe ok\x00\r\n"
	r := ProbeRow{Banner: banner, EHLOReply: "250-x\xc3\x28\r\n", EHLOExtensions: []string{"SIZE 1", "X-\xff"},
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
	ok := ProbeRow{Banner: "220 mx.example ESMTP\r\n"}
	ok.MakeValidUTF8()
	if ok.BannerRaw != nil {
		t.Errorf("banner_raw set for a valid banner")
	}
	mx := MXRow{Domain: "example.com", DNSError: "bad \xff", CNAMEs: []string{"a\xfe.example"}}
	mx.MakeValidUTF8()
	if mx.DNSError != "bad \uFFFD" || mx.CNAMEs[0] != "a\uFFFD.example" || mx.Domain != "example.com" {
		t.Errorf("mx row = %+v", mx)
	}
}

// The new tables' text is made valid like the others, and the policy body,
// bytes, is kept exactly.
func TestMakeValidUTF8PolicyAndTLSA(t *testing.T) {
	body := []byte("version: STSv1\r\nmode: enforce\xff\r\n")
	p := PolicyRow{Domain: "example.com", MTASTSTXT: []string{"v=STSv1; id=\xfe"}, STSContentType: "text/plain; charset=\xe9",
		STSBody: body}
	p.MakeValidUTF8()
	if p.MTASTSTXT[0] != "v=STSv1; id=\uFFFD" || p.STSContentType != "text/plain; charset=\uFFFD" || string(p.STSBody) != string(body) {
		t.Errorf("policies row = %+v", p)
	}
	r := TLSARow{MXHost: "mx.example", TLSAError: "bad \xff", TLSARecords: []string{"3 1 1 ab"}}
	r.MakeValidUTF8()
	if r.TLSAError != "bad \uFFFD" || r.TLSARecords[0] != "3 1 1 ab" {
		t.Errorf("tlsa row = %+v", r)
	}
}

// The sink repairs every row it writes: the cost of a row that needs no repair.
func BenchmarkMakeValidUTF8(b *testing.B) {
	r := ProbeRow{Banner: "220 mx.example.test ESMTP", EHLOReply: "250-mx.example.test\r\n250 STARTTLS\r\n",
		EHLOExtensions: []string{"STARTTLS", "SIZE 1000"}, BannerHost: "mx.example.test"}
	for b.Loop() {
		r.MakeValidUTF8()
	}
}
