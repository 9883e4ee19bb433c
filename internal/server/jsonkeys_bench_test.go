package server

import (
	"reflect"
	"testing"

	"github.com/hpcgate/hpcgate/api"
)

// The cost checkKeys adds to a job request's decoding.
func BenchmarkCheckKeys(b *testing.B) {
	body := []byte(`{"template":"hello","parameters":{"name":"bench"},"hold":true}`)
	t := reflect.TypeFor[*api.JobRequest]()
	for b.Loop() {
		if err := checkKeys(body, t); err != nil {
			b.Fatal(err)
		}
	}
}
