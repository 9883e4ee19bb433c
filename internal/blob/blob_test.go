package blob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/blob/fileblob"
)

func TestCheckKey(t *testing.T) {
	long := strings.Repeat("x", blob.MaxSegment)
	good := []string{"a", "a/b/c.txt", "inputs/story.txt", "ü/ñ", "a..b/c", long, long + "/" + long}
	bad := []string{"", "/etc/passwd", "../x", "a/../../b", "a/./b", "a//b", "a/", `a\b`, "a\x00b", "a\nb",
		strings.Repeat("x", blob.MaxKey+1), "..", ".", long + "x", "a/" + long + "x/b", "\xff"}
	for _, k := range good {
		if err := blob.CheckKey(k); err != nil {
			t.Errorf("CheckKey(%q) = %v, want nil", k, err)
		}
	}
	for _, k := range bad {
		if err := blob.CheckKey(k); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("CheckKey(%q) = %v, want ErrInvalidKey", k, err)
		}
		if err := blob.CheckPath(k); err == nil {
			t.Errorf("CheckPath(%q) = nil, want an error", k)
		}
	}
}

func TestCheckPathLeavesRoomForPrefixes(t *testing.T) {
	// The longest prefix the gateway puts before a user's path: a user name
	// of 64 bytes.
	prefix := "users/" + strings.Repeat("u", 64) + "/files/"
	p := strings.Repeat(strings.Repeat("x", 200)+"/", 4)[:blob.MaxPath]
	p = strings.TrimSuffix(p, "/")
	if err := blob.CheckPath(p); err != nil {
		t.Fatalf("CheckPath(%d bytes) = %v", len(p), err)
	}
	if err := blob.CheckKey(prefix + p); err != nil {
		t.Fatalf("a path CheckPath accepts makes a key CheckKey refuses: %v", err)
	}
	if err := blob.CheckPath(p + "xy"); err == nil {
		t.Fatalf("CheckPath accepted %d bytes", len(p)+2)
	}
}

// FuzzCheckKey checks that every key CheckKey accepts is safe (no way out
// of the namespace) and can really be stored: the file store, whose file
// system limits names to 255 bytes a segment, takes it.
func FuzzCheckKey(f *testing.F) {
	for _, s := range []string{"a/b", "../a", "a/./b", strings.Repeat("n", 256), "a/" + strings.Repeat("n", 255), "ü/" + strings.Repeat("ñ", 128), "x\x00y", "a//b"} {
		f.Add(s)
	}
	dir := f.TempDir()
	b, err := fileblob.Open(dir)
	if err != nil {
		f.Fatal(err)
	}
	n := 0
	f.Fuzz(func(t *testing.T, k string) {
		if blob.CheckKey(k) != nil {
			return
		}
		for _, seg := range strings.Split(k, "/") {
			if seg == ".." || seg == "." || seg == "" {
				t.Fatalf("CheckKey accepted %q", k)
			}
		}
		if strings.ContainsAny(k, "\\\x00") || strings.HasPrefix(k, "/") {
			t.Fatalf("CheckKey accepted %q", k)
		}
		// Keys that nest under an existing object cannot be stored (a file
		// is in the way); that is not what this checks, so each key goes
		// to a fresh prefix.
		n++
		key := fmt.Sprintf("f%d/%s", n, k)
		if len(key) > blob.MaxKey {
			return
		}
		if _, err := b.Put(context.Background(), key, bytes.NewReader([]byte("x"))); err != nil {
			t.Fatalf("CheckKey accepted %q, but the file store cannot store it: %v", k, err)
		}
		if err := b.Delete(context.Background(), key); err != nil {
			t.Fatalf("Delete(%q): %v", key, err)
		}
	})
}
