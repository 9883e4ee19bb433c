// Package blobtest is the conformance suite every blob.Bucket passes.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/hpcgate/hpcgate/internal/blob"
)

// Run runs the suite. newBucket returns an empty bucket for each subtest.
func Run(t *testing.T, newBucket func(t *testing.T) blob.Bucket) {
	tests := []struct {
		name string
		fn   func(*testing.T, blob.Bucket)
	}{
		{"PutGet", testPutGet},
		{"Ranges", testRanges},
		{"Replace", testReplace},
		{"FailedPutLeavesOld", testFailedPut},
		{"NotFound", testNotFound},
		{"List", testList},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"Large", testLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newBucket(t)) })
	}
}

func put(t *testing.T, b blob.Bucket, key, data string) blob.Attrs {
	t.Helper()
	a, err := b.Put(context.Background(), key, strings.NewReader(data))
	if err != nil {
		t.Fatalf("Put(%s): %v", key, err)
	}
	return a
}

func get(t *testing.T, b blob.Bucket, key string, off, n int64) string {
	t.Helper()
	rc, _, err := b.Get(context.Background(), key, off, n)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func testPutGet(t *testing.T, b blob.Bucket) {
	a := put(t, b, "users/alice/files/in/story.txt", "once upon a time")
	if a.Size != 16 || a.SHA256 != sum("once upon a time") {
		t.Fatalf("Put attrs = %+v", a)
	}
	if got := get(t, b, "users/alice/files/in/story.txt", 0, -1); got != "once upon a time" {
		t.Fatalf("Get = %q", got)
	}
	st, err := b.Stat(context.Background(), "users/alice/files/in/story.txt")
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != 16 || st.Key != "users/alice/files/in/story.txt" || st.Modified.IsZero() {
		t.Fatalf("Stat = %+v", st)
	}
	if st.SHA256 != "" && st.SHA256 != a.SHA256 {
		t.Fatalf("Stat sha256 %s, Put said %s", st.SHA256, a.SHA256)
	}
	if a := put(t, b, "empty", ""); a.Size != 0 || get(t, b, "empty", 0, -1) != "" {
		t.Fatalf("empty object: %+v", a)
	}
}

func testRanges(t *testing.T, b blob.Bucket) {
	put(t, b, "r", "0123456789")
	for _, tt := range []struct {
		off, n int64
		want   string
	}{{0, -1, "0123456789"}, {3, 4, "3456"}, {7, -1, "789"}, {8, 100, "89"}, {10, -1, ""}} {
		if got := get(t, b, "r", tt.off, tt.n); got != tt.want {
			t.Errorf("Get(%d, %d) = %q, want %q", tt.off, tt.n, got, tt.want)
		}
	}
}

func testReplace(t *testing.T, b blob.Bucket) {
	put(t, b, "k", "first version, long")
	put(t, b, "k", "second")
	if got := get(t, b, "k", 0, -1); got != "second" {
		t.Fatalf("after replace: %q", got)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("client went away")
	}
	n := min(len(p), r.n)
	for i := range p[:n] {
		p[i] = 'x'
	}
	r.n -= n
	return n, nil
}

func testFailedPut(t *testing.T, b blob.Bucket) {
	put(t, b, "k", "old")
	if _, err := b.Put(context.Background(), "k", &failingReader{n: 1000}); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	if got := get(t, b, "k", 0, -1); got != "old" {
		t.Fatalf("a failed Put changed the object to %d bytes", len(got))
	}
	if _, err := b.Put(context.Background(), "new", &failingReader{n: 10}); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	if _, err := b.Stat(context.Background(), "new"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("a failed Put left an object: %v", err)
	}
}

func testNotFound(t *testing.T, b blob.Bucket) {
	ctx := context.Background()
	if _, _, err := b.Get(ctx, "nope", 0, -1); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Get: %v", err)
	}
	if _, err := b.Stat(ctx, "nope"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat: %v", err)
	}
	if err := b.Delete(ctx, "nope"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Delete: %v", err)
	}
	put(t, b, "dir/file", "x")
	if _, err := b.Stat(ctx, "dir"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat of a prefix: %v, want ErrNotFound", err)
	}
}

func testList(t *testing.T, b blob.Bucket) {
	// "a.txt" sorts before "a/", though a directory "a" comes first in
	// its parent's listing
	keys := []string{"jobs/j1/outputs/a.txt", "jobs/j1/outputs/a/b", "jobs/j1/outputs/sub/b.txt", "jobs/j10/outputs/c.txt", "jobs/j2/outputs/d.txt", "users/u/x"}
	for _, k := range keys {
		put(t, b, k, k)
	}
	listAfter := func(prefix, after string) string {
		var got []string
		err := b.List(context.Background(), prefix, after, func(a blob.Attrs) error {
			if a.Size != int64(len(a.Key)) {
				return fmt.Errorf("%s: size %d", a.Key, a.Size)
			}
			got = append(got, a.Key)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(got, " ")
	}
	list := func(prefix string) string { return listAfter(prefix, "") }
	if got := list("jobs/j1/"); got != "jobs/j1/outputs/a.txt jobs/j1/outputs/a/b jobs/j1/outputs/sub/b.txt" {
		t.Errorf("List(jobs/j1/) = %s", got)
	}
	if got := list("jobs/j1"); got != "jobs/j1/outputs/a.txt jobs/j1/outputs/a/b jobs/j1/outputs/sub/b.txt jobs/j10/outputs/c.txt" {
		t.Errorf("List(jobs/j1) = %s", got)
	}
	if got := list(""); got != strings.Join(keys, " ") {
		t.Errorf("List() = %s", got)
	}
	if got := list("none/"); got != "" {
		t.Errorf("List(none/) = %s", got)
	}
	if got := list("jobs/j1/outputs/a.txt/"); got != "" {
		t.Errorf("List under an object's name = %s", got)
	}
	// after: a key listed or not, inside a directory or before it
	for _, c := range []struct{ prefix, after, want string }{
		{"", "jobs/j1/outputs/a.txt", strings.Join(keys[1:], " ")},
		{"", "jobs/j1/outputs/a/b", strings.Join(keys[2:], " ")},
		{"", "jobs/j1/outputs/a/", strings.Join(keys[1:], " ")},
		{"", "jobs/j1/outputs/b", strings.Join(keys[2:], " ")},
		{"", "jobs/j10", strings.Join(keys[3:], " ")},
		{"jobs/", "jobs/j1/outputs/sub/b.txt", "jobs/j10/outputs/c.txt jobs/j2/outputs/d.txt"},
		{"jobs/j1/", "jobs/j2", ""},
		{"jobs/j2/", "a", "jobs/j2/outputs/d.txt"},
		{"", "users/u/x", ""},
		{"", "z", ""},
	} {
		if got := listAfter(c.prefix, c.after); got != c.want {
			t.Errorf("List(%q, after %q) = %s, want %s", c.prefix, c.after, got, c.want)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := b.List(context.Background(), "", "", func(blob.Attrs) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("List did not stop at fn's error: %v after %d", err, n)
	}
}

func testDelete(t *testing.T, b blob.Bucket) {
	put(t, b, "a/b/c", "x")
	put(t, b, "a/d", "y")
	if err := b.Delete(context.Background(), "a/b/c"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(context.Background(), "a/b/c"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("deleted object: %v", err)
	}
	if get(t, b, "a/d", 0, -1) != "y" {
		t.Fatal("delete removed a neighbour")
	}
	put(t, b, "a/b/c", "again") // the directory may have gone; it comes back
}

func testInvalidKeys(t *testing.T, b blob.Bucket) {
	ctx := context.Background()
	for _, k := range []string{"../escape", "/abs", "a/../../b", `a\b`, "a\x00b", ""} {
		if _, err := b.Put(ctx, k, strings.NewReader("x")); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", k, err)
		}
		if _, _, err := b.Get(ctx, k, 0, -1); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Get(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
}

func testLarge(t *testing.T, b blob.Bucket) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	a, err := b.Put(context.Background(), "big", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(data)
	if a.Size != int64(len(data)) || a.SHA256 != hex.EncodeToString(h[:]) {
		t.Fatalf("Put attrs = %+v", a)
	}
	if got := get(t, b, "big", 1<<20, 16); got != "0123456789abcdef" {
		t.Fatalf("ranged read of a large object = %q", got)
	}
}
