package server

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
)

// The README's sample validation error is what the server answers to the
// request it describes.
func TestReadmeValidationSample(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "A bad request is answered")
	_, sample, ok2 := strings.Cut(rest, "```json\n")
	sample, _, ok3 := strings.Cut(sample, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("the README has no sample validation error")
	}
	var want api.Problem
	if err := json.Unmarshal([]byte(sample), &want); err != nil {
		t.Fatalf("the README's sample is not JSON: %v", err)
	}
	h := newHarness(t, nil)
	tok := h.token("alice", time.Time{}, userScopes...)
	r := h.do("POST", "/v1/jobs", tok, map[string]any{"template": "wordcount", "parameters": map[string]any{"min_length": 0}})
	got := r.problem
	got.RequestID, want.RequestID = "", ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the README says\n%+v\nthe server answers\n%+v", want, got)
	}
}
