package fileblob

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/blob/blobtest"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Bucket {
		b, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	})
}

// A symlink planted inside the bucket must not lead reads outside it.
func TestSymlinkEscapeRefused(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := os.Symlink(outside, filepath.Join(dir, "o", "link")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Get(t.Context(), "link/secret", 0, -1); err == nil {
		t.Fatal("read through a symlink out of the bucket")
	}
}
