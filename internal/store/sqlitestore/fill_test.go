package sqlitestore

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/hpcgate/hpcgate/internal/store/storetest"
)

var fillN = flag.Int("fill.n", 20000, "jobs BenchmarkFill creates")

// BenchmarkFill: go test -run '^$' -bench Fill -benchtime 1x -fill.n 100000
func BenchmarkFill(b *testing.B) {
	for i := 0; i < b.N; i++ {
		path := filepath.Join(b.TempDir(), "hpcgate.db")
		s, err := Open(context.Background(), path)
		if err != nil {
			b.Fatal(err)
		}
		storetest.Fill(b, s, *fillN, func() int64 {
			var n int64
			for _, p := range []string{path, path + "-wal"} {
				if fi, err := os.Stat(p); err == nil {
					n += fi.Size()
				}
			}
			return n
		})
		s.Close()
	}
}
