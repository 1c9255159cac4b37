package synthscan

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/mxsurvey/mxsurvey/analyze"
)

// readTree returns every file under dir by its relative path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func sameTrees(t *testing.T, what string, a, b map[string][]byte) {
	t.Helper()
	if len(a) != len(b) {
		t.Errorf("%s: %d files and %d files", what, len(a), len(b))
	}
	for name, data := range a {
		if !bytes.Equal(data, b[name]) {
			t.Errorf("%s: %s differs", what, name)
		}
	}
}

// The same seed gives the same scan whatever the workers; the scan is valid
// and the analyzer's counts agree with the generator's; and the analyzer
// gives the same outputs, byte for byte, on one worker and on many, over
// several shard directories with several parts and row groups each.
func TestGenerate(t *testing.T) {
	base := t.TempDir()
	cfg := Config{Dir: filepath.Join(base, "a"), ProbeRows: 1200, Seed: 7, Shards: 3, PartRows: 250, GroupRows: 40, Workers: 1}
	res, err := Generate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.ProbeRows < cfg.ProbeRows || res.ProbeRows > cfg.ProbeRows+20 || len(res.Dirs) != 3 {
		t.Fatalf("result %+v", res)
	}
	// About a quarter as many distinct leaves as rows, and several times as
	// many mx rows: the shape of the million-row scan.
	if res.Leaves < res.ProbeRows/6 || res.Leaves > res.ProbeRows/2 || 2*res.MXRows < 3*res.ProbeRows {
		t.Errorf("%d leaves and %d mx rows for %d probe rows", res.Leaves, res.MXRows, res.ProbeRows)
	}
	if c, ok := Cached(cfg); !ok || c.Leaves != res.Leaves {
		t.Errorf("Cached: %+v, %v", c, ok)
	}
	unsharded := Config{Dir: filepath.Join(base, "one"), ProbeRows: 50, Seed: 7}
	if _, err := Generate(context.Background(), unsharded); err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(base, "moved")
	if err := os.Rename(unsharded.Dir, moved); err != nil {
		t.Fatal(err)
	}
	unsharded.Dir = moved
	if c, ok := Cached(unsharded); !ok || c.Dirs[0] != filepath.Join(moved, "scan") || c.Roots != filepath.Join(moved, "roots.pem") {
		t.Errorf("Cached after a move, Shards 0 for 1: %+v, %v", c, ok)
	}
	if _, ok := Cached(Config{Dir: cfg.Dir, ProbeRows: 1201, Seed: 7, Shards: 3, PartRows: 250, GroupRows: 40}); ok {
		t.Errorf("a cached scan of another size was taken")
	}
	again := cfg
	again.Dir, again.Workers = filepath.Join(base, "b"), 4
	if _, err := Generate(context.Background(), again); err != nil {
		t.Fatal(err)
	}
	first := readTree(t, cfg.Dir)
	delete(first, ResultFile) // it names the directory and the time taken
	second := readTree(t, again.Dir)
	delete(second, ResultFile)
	sameTrees(t, "generated on 1 and 4 workers", first, second)

	var outs []map[string][]byte
	for _, workers := range []int{1, 8} {
		out := filepath.Join(base, "report", string(rune('0'+workers)))
		s, err := analyze.Analyze(context.Background(), analyze.Options{Dirs: res.Dirs, RootsFile: res.Roots, OutDir: out, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		if s.Hosts["total"] != res.ProbeRows {
			t.Errorf("analyzed %d hosts, generated %d", s.Hosts["total"], res.ProbeRows)
		}
		if s.Hosts["trusted"] == 0 || s.Hosts["self_signed"] == 0 || s.Hosts["expired"] == 0 || s.Hosts["skipped"] == 0 ||
			s.Hosts["match_mx"] == 0 || s.Domains["dns_error"] == 0 || s.Domains["primary_mx_valid"] == 0 {
			t.Errorf("a case is missing: %v %v", s.Hosts, s.Domains)
		}
		outs = append(outs, readTree(t, out))
	}
	sameTrees(t, "analyzed on 1 and 8 workers", outs[0], outs[1])
}
