package storedriver

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
)

// fill sets every field of v (recursively) to a value that is not zero.
func fill(t *testing.T, v reflect.Value, name string) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(name)
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(len(name)))
	case reflect.Float64:
		v.SetFloat(float64(len(name)) + 0.5)
	case reflect.Bool:
		v.SetBool(true) // not the zero value, which omitempty would hide

	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		fill(t, k, name+"k")
		e := reflect.New(v.Type().Elem()).Elem()
		fill(t, e, name+"v")
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(t, p.Elem(), name)
		v.Set(p)
	case reflect.Slice:
		if v.Type() == reflect.TypeOf(json.RawMessage(nil)) {
			v.SetBytes([]byte(`{"` + name + `":[1.50,"x"]}`))
			return
		}
		e := reflect.New(v.Type().Elem()).Elem()
		fill(t, e, name+"[0]")
		v.Set(reflect.Append(reflect.MakeSlice(v.Type(), 0, 1), e))
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			fill(t, v.Index(i), fmt.Sprintf("%s[%d]", name, i))
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Date(2025, 1, 2, 3, 4, 5, len(name)*1000, time.UTC)))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			fill(t, v.Field(i), name+"."+v.Type().Field(i).Name)
		}
	default:
		t.Fatalf("field %s: no filler for %s", name, v.Type())
	}
}

// Every field of job.Job survives the stored form: a field added to
// job.Job but not to JobRow fails here.
func TestEveryFieldRoundTrips(t *testing.T) {
	var j job.Job
	fill(t, reflect.ValueOf(&j).Elem(), "Job")
	doc, err := FromJob(&j).Encode()
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeJobRow(doc)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Job(); !reflect.DeepEqual(got, &j) {
		t.Fatalf("round trip through %s\ngot  %+v\nwant %+v", doc, got, &j)
	}
	if !strings.HasPrefix(string(doc), `{"v":2,"id":"Job.ID"`) {
		t.Fatalf("stored form %s, want explicit names and a version", doc)
	}
}

// The stored names are fixed: this document is version 2 as written
// when it was introduced, and must keep reading the same.
func TestVersion2Names(t *testing.T) {
	doc := `{"v":2,"id":"j1","name":"n","owner":"alice","template":"hello","template_version":3,"environment":"slurm","state":"succeeded","reason":"done",
		"parameters":{"b":1,"a":2},"inputs":{"in":"p"},"input_sizes":{"in":5},"resources":{"nodes":2,"cores_per_node":4,"memory_mb":100,"walltime_s":60},
		"labels":{"k":"v"},"parent_id":"p1","sweep_id":"s1","depth":1,"created_at":"2025-01-02T03:04:05Z","started_at":"2025-01-02T03:04:06Z",
		"finished_at":"2025-01-02T03:04:07Z","exit_code":3,"usage":{"cpu_seconds":1.5,"max_rss_bytes":7,"wall_seconds":2.5},"scheduler":"slurm",
		"backend_id":"42","error":"e","idem_key":"ik","idem_hash":"ih","template_doc":{"z":1,"a":2},"submissions":2,"claimed_by":"r1",
		"claimed_until":"2025-01-02T03:05:00Z"}`
	r, err := DecodeJobRow([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	j := r.Job()
	if j.ID != "j1" || j.TemplateVersion != 3 || string(j.Parameters) != `{"b":1,"a":2}` || j.InputSizes["in"] != 5 ||
		j.Resources.CoresPerNode != 4 || j.Resources.MemoryMB != 100 || j.Labels["k"] != "v" || j.SweepID != "s1" ||
		j.FinishedAt.Second() != 7 || *j.ExitCode != 3 || j.Usage.MaxRSSBytes != 7 || j.BackendID != "42" ||
		j.IdemHash != "ih" || string(j.TemplateDoc) != `{"z":1,"a":2}` || j.Submissions != 2 || j.ClaimedBy != "r1" ||
		j.ClaimedUntil.Minute() != 5 || j.State != job.Succeeded {
		t.Fatalf("version 2 read as %+v", j)
	}
}

func TestUnknownVersionRefused(t *testing.T) {
	if _, err := DecodeJobRow([]byte(`{"v":99,"id":"x"}`)); err == nil || !strings.Contains(err.Error(), "newer hpcgate") {
		t.Fatalf("version 99: %v", err)
	}
}
