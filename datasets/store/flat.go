package store

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// A flat row type (only string, bool, int32 and int64 fields, each a
// required column of the part: the analyzer's mxRow) is read without
// parquet-go's row reconstruction, which sets each field through the
// generic machinery for nested and optional values and copies every
// string: the mx pass read 4.7 million rows that way. flatReader takes the
// projection's rows and sets each field from its value, and a string equal
// to the same field's in the row before is shared rather than copied, so a
// column that repeats down the rows (a domain's name over its mx rows, its
// status, an MX host) costs one string per run.

// flatFields returns the field kinds of T when T is flat and rg is
// project's result for T, which holds each of T's columns with the same
// type, in T's column order.
func flatFields[T any](rg parquet.RowGroup) ([]reflect.Kind, bool) {
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct {
		return nil, false
	}
	if _, ok := rg.(projected); !ok {
		return nil, false
	}
	schema := parquet.SchemaOf(new(T))
	fields := schema.Fields()
	if len(fields) != t.NumField() {
		return nil, false
	}
	kinds := make([]reflect.Kind, t.NumField())
	for i, f := range fields {
		if !f.Leaf() || f.Optional() || f.Repeated() || tagName(t.Field(i)) != f.Name() {
			return nil, false
		}
		switch k := t.Field(i).Type.Kind(); k {
		case reflect.String, reflect.Bool, reflect.Int32, reflect.Int64:
			kinds[i] = k
		default:
			return nil, false
		}
	}
	return kinds, true
}

// flatReader reads rows into T, a batch at a time, for readBatches; kinds
// are flatFields'.
func flatReader[T any](path string, rows parquet.Rows, kinds []reflect.Kind) func([]T) (int, error) {
	buf := make([]parquet.Row, readBatch)
	prev := make([]string, len(kinds)) // each string field's value in the row before
	return func(out []T) (int, error) {
		n, err := rows.ReadRows(buf[:min(len(out), len(buf))])
		for i, row := range buf[:n] {
			if len(row) != len(kinds) {
				return 0, fmt.Errorf("reading %s: a row of %d values for %d columns", path, len(row), len(kinds))
			}
			v := reflect.ValueOf(&out[i]).Elem()
			for k, kind := range kinds {
				switch kind {
				case reflect.String:
					if b := row[k].ByteArray(); string(b) != prev[k] {
						prev[k] = string(b)
					}
					v.Field(k).SetString(prev[k])
				case reflect.Bool:
					v.Field(k).SetBool(row[k].Boolean())
				case reflect.Int32:
					v.Field(k).SetInt(int64(row[k].Int32()))
				case reflect.Int64:
					v.Field(k).SetInt(row[k].Int64())
				}
			}
		}
		return n, err
	}
}

// tagName is a field's column name: its parquet tag's first part, or the
// field's name when that is empty.
func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("parquet"), ",")
	if name == "" {
		return f.Name
	}
	return name
}
