package server

import (
	"reflect"
	"testing"

	"github.com/hpcgate/hpcgate/api"
)

// The cost checkReading adds to a job request's decoding.
func BenchmarkCheckReading(b *testing.B) {
	body := []byte(`{"template":"hello","parameters":{"name":"bench"},"hold":true}`)
	t := reflect.TypeFor[*api.JobRequest]()
	for b.Loop() {
		if err := checkReading(body, t); err != nil {
			b.Fatal(err)
		}
	}
}
