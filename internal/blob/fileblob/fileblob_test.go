package fileblob

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
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

// A key whose part names an object, or below which objects are stored,
// cannot be an object in a file store: Put says so (ErrKeyConflict) and
// leaves both as they were. It used to fail with the file system's words,
// which the server answered as a 500.
func TestKeyConflicts(t *testing.T) {
	b, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	for _, k := range []string{"f", "d/x"} {
		if _, err := b.Put(ctx, k, strings.NewReader(k)); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"f/g", "f/g/h", "d"} {
		if _, err := b.Put(ctx, k, strings.NewReader("new")); !errors.Is(err, blob.ErrKeyConflict) {
			t.Errorf("Put(%q) = %v, want ErrKeyConflict", k, err)
		}
	}
	for _, k := range []string{"f", "d/x"} {
		rc, _, err := b.Get(ctx, k, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if string(got) != k {
			t.Errorf("%s now holds %q", k, got)
		}
	}
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
