package truth

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// The truth files are JSON Lines of a million rows and more. encoding/json
// costs about twice what an encoder planned once per type does (README,
// "Measurements"), so the rows are written by such a plan: built from the
// struct's fields and json tags when the package loads, it writes what
// json.Marshal writes, byte for byte (TestTruthJSON), and a new field is
// written without being named here.

// AppendDomain appends d as one JSON line.
func AppendDomain(b []byte, d *Domain) []byte {
	return append(domainPlan.append(b, reflect.ValueOf(d).Elem()), '\n')
}

// AppendHost appends h as one JSON line.
func AppendHost(b []byte, h *Host) []byte {
	return append(hostPlan.append(b, reflect.ValueOf(h).Elem()), '\n')
}

// AppendTLSA appends r as one JSON line.
func AppendTLSA(b []byte, r *TLSA) []byte {
	return append(tlsaPlan.append(b, reflect.ValueOf(r).Elem()), '\n')
}

var (
	domainPlan = planFor(reflect.TypeFor[Domain]())
	hostPlan   = planFor(reflect.TypeFor[Host]())
	tlsaPlan   = planFor(reflect.TypeFor[TLSA]())
)

// appender appends one value of a planned type.
type appender func(b []byte, v reflect.Value) []byte

// structPlan writes a struct's fields in order, as encoding/json does.
type structPlan struct {
	fields []planField
}

type planField struct {
	index     int
	name      string // the JSON key, quoted, with its colon
	omitEmpty bool
	write     appender
}

func (p *structPlan) append(b []byte, v reflect.Value) []byte {
	b = append(b, '{')
	first := true
	for i := range p.fields {
		f := &p.fields[i]
		fv := v.Field(f.index)
		if f.omitEmpty && isEmpty(fv) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, f.name...)
		b = f.write(b, fv)
	}
	return append(b, '}')
}

func planFor(t reflect.Type) *structPlan {
	p := &structPlan{}
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = sf.Name
		}
		key, _ := json.Marshal(name) // a string always marshals
		p.fields = append(p.fields, planField{
			index:     i,
			name:      string(key) + ":",
			omitEmpty: strings.Contains(","+opts+",", ",omitempty,"),
			write:     appenderFor(sf.Type),
		})
	}
	return p
}

var timeType = reflect.TypeFor[time.Time]()

func appenderFor(t reflect.Type) appender {
	if t == timeType {
		return func(b []byte, v reflect.Value) []byte {
			b = append(b, '"')
			b = v.Interface().(time.Time).AppendFormat(b, time.RFC3339Nano)
			return append(b, '"')
		}
	}
	switch t.Kind() {
	case reflect.String:
		return func(b []byte, v reflect.Value) []byte { return appendString(b, v.String()) }
	case reflect.Bool:
		return func(b []byte, v reflect.Value) []byte { return strconv.AppendBool(b, v.Bool()) }
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return func(b []byte, v reflect.Value) []byte { return strconv.AppendInt(b, v.Int(), 10) }
	case reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return func(b []byte, v reflect.Value) []byte { return strconv.AppendUint(b, v.Uint(), 10) }
	case reflect.Struct:
		p := planFor(t)
		return p.append
	case reflect.Pointer:
		elem := appenderFor(t.Elem())
		return func(b []byte, v reflect.Value) []byte {
			if v.IsNil() {
				return append(b, "null"...)
			}
			return elem(b, v.Elem())
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return func(b []byte, v reflect.Value) []byte {
				if v.IsNil() {
					return append(b, "null"...)
				}
				b = append(b, '"')
				b = base64.StdEncoding.AppendEncode(b, v.Bytes())
				return append(b, '"')
			}
		}
		elem := appenderFor(t.Elem())
		return func(b []byte, v reflect.Value) []byte {
			if v.IsNil() {
				return append(b, "null"...)
			}
			b = append(b, '[')
			for i := range v.Len() {
				if i > 0 {
					b = append(b, ',')
				}
				b = elem(b, v.Index(i))
			}
			return append(b, ']')
		}
	}
	// The plans are made when the package loads, from the truth's own types:
	// a field of another kind fails every run and test at once.
	panic("lab/truth: no JSON plan for a field of type " + t.String())
}

// isEmpty is encoding/json's omitempty test.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint() == 0
	case reflect.Pointer, reflect.Interface:
		return v.IsNil()
	}
	return false
}

// appendString appends s quoted as encoding/json does: printable ASCII
// without ", \, <, > and & goes as it is, anything else through
// encoding/json's own escaping.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
