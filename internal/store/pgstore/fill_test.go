package pgstore

import (
	"context"
	"flag"
	"testing"

	"github.com/hpcgate/hpcgate/internal/store/storetest"
)

var fillN = flag.Int("fill.n", 20000, "jobs BenchmarkFill creates")

// BenchmarkFill: go test -run '^$' -bench Fill -benchtime 1x -fill.n 100000
// (with HPCGATE_TEST_POSTGRES).
func BenchmarkFill(b *testing.B) {
	testURL(b)
	for i := 0; i < b.N; i++ {
		s, err := Open(context.Background(), emptySchema(b))
		if err != nil {
			b.Fatal(err)
		}
		storetest.Fill(b, s, *fillN, func() int64 {
			var n int64
			s.d.pool.QueryRow(context.Background(), `SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c
				JOIN pg_namespace ns ON ns.oid = c.relnamespace WHERE ns.nspname = current_schema() AND c.relkind = 'r'`).Scan(&n)
			return n
		})
		s.Close()
	}
}
