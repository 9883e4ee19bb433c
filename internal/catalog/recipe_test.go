package catalog

import (
	"reflect"
	"testing"
)

// The stored form is read back as written, and a fixture of the stored
// form as this release writes it still decodes: renaming a Go field must
// not break jobs already accepted.
func TestRecipeStoredForm(t *testing.T) {
	tm := &Template{Name: "wc", Version: 2, Image: "img", Command: []string{"sh", "-c", "x"},
		Inputs: []Input{{Name: "text", Path: "input.txt"}}, Outputs: []string{"*.json"},
		Adapters: Adapters{Verify: []string{"v"}, Prepare: []string{"p"}, Collect: []string{"c"}}}
	r := tm.Recipe(nil)
	got, err := DecodeRecipe(r.Encode())
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, r)
	}
	fixture := `{"v":1,"template":"wc","template_version":2,"image":"img","command":["sh","-c","x"],"inputs":[{"name":"text","path":"input.txt"}],"outputs":["*.json"],"verify":["v"],"prepare":["p"],"collect":["c"]}`
	old, err := DecodeRecipe([]byte(fixture))
	if err != nil || !reflect.DeepEqual(old, r) {
		t.Fatalf("fixture: %+v, %v; want %+v", old, err, r)
	}
	if _, err := DecodeRecipe([]byte(`{"v":2}`)); err == nil {
		t.Fatal("a newer stored form was read")
	}
}
