package txtrecord

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestSelect(t *testing.T) {
	txts := []string{"v=X1; a=1", "v=X1", "v=X1 ;a=1", "v=X1\t;a=1", "v=X10; a=1", " v=X1; a=1", "v=x1; a=1", "other", ""}
	got := selectRecords(txts, "v=X1")
	want := []string{"v=X1; a=1", "v=X1", "v=X1 ;a=1", "v=X1\t;a=1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("selectRecords = %q; want %q", got, want)
	}
}

func TestFields(t *testing.T) {
	tests := []struct {
		rec  string
		want string // fields as name=value joined by "|"; "" = error
	}{
		{"v=X1; a=1", "a=1"},
		{"v=X1;a=1;", "a=1"},
		{"v=X1 ; a=1 ; ", "a=1"},
		{"v=X1;\ta=1\t;\tb=x y", "a=1|b=x y"},
		{"v=X1; a=b=c", "a=b=c"},
		{"v=X1; a.b-c_d=1", "a.b-c_d=1"},
		{"v=X1; " + strings.Repeat("a", 32) + "=1", strings.Repeat("a", 32) + "=1"},
		{"v=X1; " + strings.Repeat("a", 33) + "=1", ""},
		{"v=X1", ""},
		{"v=X1;", ""},
		{"v=X1; ;", ""},
		{"v=X1;; a=1", ""},
		{"v=X1; a=1;;", ""},
		{"v=X1; a=1 ", ""}, // WSP only next to ";"
		{" v=X1; a=1", ""},
		{"v=X1; a", ""},
		{"v=X1; a=", ""},
		{"v=X1; =1", ""},
		{"v=X1; -a=1", ""},
		{"v=X1; a b=1", ""},
		{"v=X2; a=1", ""},
	}
	for _, tt := range tests {
		got0, err := fields(tt.rec, "v=X1")
		if tt.want == "" {
			if err == nil || !errors.Is(err, ErrSyntax) {
				t.Errorf("fields(%q) = %v, %v; want ErrSyntax", tt.rec, got0, err)
			}
			continue
		}
		var got []string
		for _, f := range got0 {
			got = append(got, f.Name+"="+f.Value)
		}
		if err != nil || strings.Join(got, "|") != tt.want {
			t.Errorf("fields(%q) = %q, %v; want %q", tt.rec, got, err, tt.want)
		}
	}
}

func TestIsValue(t *testing.T) {
	for s, want := range map[string]bool{"a": true, "!:<>~": true, "": false, "a b": false, "a=b": false, "a;b": false, "\x7f": false, "é": false} {
		if IsValue(s) != want {
			t.Errorf("IsValue(%q) = %v", s, !want)
		}
	}
}

func FuzzFields(f *testing.F) {
	f.Add("v=X1; a=1;")   // valid
	f.Add("v=X1 ;; a=1")  // empty field
	f.Add("v=X1; a=\xff") // invalid UTF-8 value
	f.Add("v=X1; =; =;")  // empty names
	f.Fuzz(func(t *testing.T, rec string) {
		got, err := fields(rec, "v=X1")
		if err != nil {
			return
		}
		if len(got) == 0 {
			t.Fatal("no fields without an error")
		}
		for _, fl := range got {
			if !IsName(fl.Name) || fl.Value == "" || strings.ContainsRune(fl.Value, ';') {
				t.Fatalf("field %q", fl)
			}
			if !strings.Contains(rec, fmt.Sprintf("%s=%s", fl.Name, fl.Value)) {
				t.Fatalf("field %q not in the record", fl)
			}
		}
	})
}
