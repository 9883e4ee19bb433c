package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/examples/templates"
	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/config"
	"github.com/hpcgate/hpcgate/internal/job"
)

// FuzzJobRequest reads arbitrary bodies as POST /v1/jobs does and
// instantiates what decodes. Properties: nothing panics; invalid UTF-8 is
// always refused (never silently replaced), and a valid body never is for
// that; a request that is accepted is accepted again, unchanged, when its
// own result is sent back (defaults are applied once).
func FuzzJobRequest(f *testing.F) {
	for _, s := range []string{
		`{"template":"hello","parameters":{"name":"World"}}`,
		`{"template":"wordcount","inputs":{"text":"a/b.txt"},"parameters":{"min_length":3},"labels":{"k":"v"}}`,
		`{"template":"fanout","parameters":{"n":5},"resources":{"cores_per_node":2,"walltime_s":60}}`,
		`{"template":"hello","parameters":{"name":"a` + "\xff" + `"}}`,
		`{"template":"hello","parameters":{"name":1e999}}`,
		`{"template":"wordcount","inputs":{"text":"../../etc/passwd"}}`,
		`{"template":"hello"}{"x":1}`,
		`{"template":"hello","parameters":{"name":"X"},"hold":true,"hold":false}`,
		`{"template":"hello","HOLD":true}`,
		`{"template":"hello","parameters":{"name":"X","NAME":"Y"}}`,
	} {
		f.Add([]byte(s))
	}
	cat, err := catalog.Load(config.Default().Environments, templates.FS)
	if err != nil {
		f.Fatal(err)
	}
	s := New(nil, nil, cat, nil, nil, nil, NewHub(), nil, nil)
	stat := func(string) (int64, error) { return 1, nil }
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/v1/jobs", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var req api.JobRequest
		err := s.readJSON(httptest.NewRecorder(), r, &req)
		var he *httpError
		isUTF8Err := errors.As(err, &he) && strings.Contains(he.detail, "UTF-8")
		if !utf8.Valid(body) && err == nil {
			t.Fatalf("invalid UTF-8 accepted: %q", body)
		}
		if utf8.Valid(body) && isUTF8Err {
			t.Fatalf("valid UTF-8 refused as invalid: %q", body)
		}
		if err != nil {
			return
		}
		// it reads one way: each member once (case aside), and the
		// request's own named exactly
		var members map[string]json.RawMessage
		if json.Unmarshal(body, &members) == nil {
			rt := reflect.TypeFor[api.JobRequest]()
			for k := range members {
				for i := range rt.NumField() {
					name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
					if strings.EqualFold(name, k) && name != k {
						t.Fatalf("member %q accepted for %q: %s", k, name, body)
					}
				}
			}
		}
		if dup := twin(body); dup != "" {
			t.Fatalf("member %q given twice, accepted: %s", dup, body)
		}
		var res *job.Resources
		if req.Resources != nil {
			res = &job.Resources{Nodes: req.Resources.Nodes, CoresPerNode: req.Resources.CoresPerNode, MemoryMB: req.Resources.MemoryMB, WalltimeS: req.Resources.WalltimeS}
		}
		cr := catalog.Request{Template: req.Template, Version: req.Version, Parameters: req.Parameters, Inputs: req.Inputs, Environment: req.Environment, Resources: res, Labels: req.Labels}
		inst, err := cat.Instantiate(cr, stat)
		if err != nil {
			var verr *catalog.ValidationError
			if !errors.As(err, &verr) || len(verr.Fields) == 0 {
				t.Fatalf("refused without naming a field: %v", err)
			}
			return
		}
		cr.Parameters = inst.Parameters
		again, err := cat.Instantiate(cr, stat)
		if err != nil {
			t.Fatalf("its own result is refused: %v", err)
		}
		if !jsonEqual(again.Parameters, inst.Parameters) {
			t.Fatalf("parameters changed on the second pass: %s, then %s", inst.Parameters, again.Parameters)
		}
	})
}

// twin returns a member some object of the JSON text body names twice,
// or "".
func twin(body []byte) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	type open struct {
		keys    map[string]bool // nil for an array
		wantKey bool
	}
	var stack []*open
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &open{keys: map[string]bool{}, wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, &open{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		default:
			if n := len(stack); n > 0 && stack[n-1].wantKey {
				k := tok.(string)
				if stack[n-1].keys[k] {
					return tok.(string)
				}
				stack[n-1].keys[k], stack[n-1].wantKey = true, false
				continue
			}
		}
		if n := len(stack); n > 0 && stack[n-1].keys != nil {
			stack[n-1].wantKey = true // a value ended: a key comes next
		}
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ea, _ := json.Marshal(x)
	eb, _ := json.Marshal(y)
	return bytes.Equal(ea, eb)
}
