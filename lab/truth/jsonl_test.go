package truth

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/mxsurvey/mxsurvey/lab/pki"
	"github.com/mxsurvey/mxsurvey/lab/world"
)

// testTruth states the truth of an n-domain world (every case is in it
// from 1000 domains).
func testTruth(t testing.TB, n int) *Truth {
	t.Helper()
	w, err := world.New(world.Params{Domains: n, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := pki.New(w.Seed())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewStater(w, auth, 25, 443).All()
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestTruthJSON holds the truth encoders against encoding/json.
func TestTruthJSON(t *testing.T) {
	tr := testTruth(t, 1000)
	for i := range tr.Domains {
		want, _ := json.Marshal(&tr.Domains[i])
		if got := AppendDomain(nil, &tr.Domains[i]); !bytes.Equal(got, append(want, '\n')) {
			t.Fatalf("domain row differs:\n%s\n%s", got, want)
		}
	}
	for i := range tr.Hosts {
		want, _ := json.Marshal(&tr.Hosts[i])
		if got := AppendHost(nil, &tr.Hosts[i]); !bytes.Equal(got, append(want, '\n')) {
			t.Fatalf("host row differs:\n%s\n%s", got, want)
		}
	}
	odd := Domain{Domain: "a\"<b>\x01é", CNAMEs: []string{}, Cases: []string{"x&y"}}
	want, _ := json.Marshal(&odd)
	if got := AppendDomain(nil, &odd); !bytes.Equal(got, append(want, '\n')) {
		t.Errorf("escaping:\n%s\n%s", got, want)
	}
}

// BenchmarkAppendHost compares the planned encoder with encoding/json on
// the rows of a 20,000-domain world, whose mix of rows is a million-domain
// world's (README "Measurements").
func BenchmarkAppendHost(b *testing.B) {
	tr := testTruth(b, 20000)
	var buf []byte
	b.Run("plan", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			buf = AppendHost(buf[:0], &tr.Hosts[i%len(tr.Hosts)])
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			j, _ := json.Marshal(&tr.Hosts[i%len(tr.Hosts)])
			buf = append(append(buf[:0], j...), '\n')
		}
	})
}
