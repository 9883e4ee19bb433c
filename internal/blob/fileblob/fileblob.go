// Package fileblob is a blob.Bucket in a local directory: the embedded
// default.
//
// Objects live under DIR/o/KEY; a Put writes DIR/tmp/RANDOM, syncs it and
// renames it into place, so an object appears whole or not at all. The
// SHA-256 is kept in the file's extended attribute user.hpcgate.sha256 when
// the file system has them. Every path goes through an os.Root, so no key
// can reach outside DIR.
package fileblob

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/hpcgate/hpcgate/internal/blob"
	"golang.org/x/sys/unix"
)

const shaAttr = "user.hpcgate.sha256"

// Bucket is a blob.Bucket in a directory.
type Bucket struct {
	dir  string
	root *os.Root
}

var _ blob.Bucket = (*Bucket)(nil)

// Open opens the bucket in dir, creating the directory if needed. One
// process owns a bucket (the gateway's data directory is locked): what a
// crash left half-written in DIR/tmp is removed, where it stayed for good,
// counted nowhere.
func Open(dir string) (*Bucket, error) {
	for _, d := range []string{dir, dir + "/o", dir + "/tmp"} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open bucket: %w", err)
		}
	}
	left, err := os.ReadDir(dir + "/tmp")
	if err != nil {
		return nil, fmt.Errorf("open bucket: %w", err)
	}
	for _, e := range left {
		if err := os.Remove(dir + "/tmp/" + e.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open bucket: remove what a crash left: %w", err)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open bucket: %w", err)
	}
	return &Bucket{dir: dir, root: root}, nil
}

// Close releases the bucket's directory handle.
func (b *Bucket) Close() error { return b.root.Close() }

func objPath(key string) string { return "o/" + key }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Put implements blob.Bucket.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader) (blob.Attrs, error) {
	if err := blob.CheckKey(key); err != nil {
		return blob.Attrs{}, err
	}
	var rnd [12]byte
	rand.Read(rnd[:])
	tmp := "tmp/" + hex.EncodeToString(rnd[:])
	f, err := b.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return blob.Attrs{}, fmt.Errorf("put %s: %w", key, err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			b.root.Remove(tmp)
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, r})
	if err != nil {
		return blob.Attrs{}, fmt.Errorf("put %s: %w", key, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	_ = unix.Fsetxattr(int(f.Fd()), shaAttr, []byte(sum), 0) // best effort: not every file system has xattrs
	if err := f.Sync(); err != nil {
		return blob.Attrs{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return blob.Attrs{}, fmt.Errorf("put %s: %w", key, err)
	}
	dst := objPath(key)
	// A concurrent Delete may remove a directory just made, as it removes
	// the folders it empties: while MkdirAll makes the ones below it (it
	// failed 2% of uploads beside deletes in one folder, found by the
	// eighth probe), or before the rename. Both are tried again.
	for attempt := 0; ; attempt++ {
		if err := b.root.MkdirAll(path.Dir(dst), 0o700); err != nil {
			// EEXIST comes of a put making the same folder at once too:
			// only an object where a folder must be is a conflict
			conflict := (errors.Is(err, fs.ErrExist) || errors.Is(err, unix.ENOTDIR)) && b.objectAbove(dst)
			if !conflict && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist)) && attempt < 8 {
				continue
			}
			if conflict || errors.Is(err, unix.ENOTDIR) {
				return blob.Attrs{}, fmt.Errorf("put %s: %w: an object is stored under a part of it", key, blob.ErrKeyConflict)
			}
			return blob.Attrs{}, fmt.Errorf("put %s: %w", key, err)
		}
		err := b.root.Rename(tmp, dst)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt == 8 {
			if errors.Is(err, fs.ErrExist) || isDirErr(err) {
				return blob.Attrs{}, fmt.Errorf("put %s: %w: objects are stored below it", key, blob.ErrKeyConflict)
			}
			return blob.Attrs{}, fmt.Errorf("put %s: %w", key, err)
		}
	}
	done = true
	st, err := b.root.Stat(dst)
	if err != nil {
		return blob.Attrs{}, fmt.Errorf("put %s: %w", key, err)
	}
	return blob.Attrs{Key: key, Size: n, SHA256: sum, Modified: st.ModTime()}, nil
}

func isDirErr(err error) bool {
	return errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ENOTEMPTY)
}

func (b *Bucket) open(key string) (*os.File, blob.Attrs, error) {
	if err := blob.CheckKey(key); err != nil {
		return nil, blob.Attrs{}, err
	}
	f, err := b.root.Open(objPath(key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || isDirErr(err) {
			return nil, blob.Attrs{}, fmt.Errorf("%s: %w", key, blob.ErrNotFound)
		}
		return nil, blob.Attrs{}, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, blob.Attrs{}, err
	}
	if st.IsDir() {
		f.Close()
		return nil, blob.Attrs{}, fmt.Errorf("%s: %w", key, blob.ErrNotFound)
	}
	a := blob.Attrs{Key: key, Size: st.Size(), Modified: st.ModTime()}
	var buf [64]byte
	if n, err := unix.Fgetxattr(int(f.Fd()), shaAttr, buf[:]); err == nil && n == 64 {
		a.SHA256 = string(buf[:])
	}
	return f, a, nil
}

type section struct {
	io.Reader
	f *os.File
}

func (s section) Close() error { return s.f.Close() }

// WriteTo lets io.Copy use sendfile/copy_file_range when the whole rest of
// the file is wanted.
func (s section) WriteTo(w io.Writer) (int64, error) {
	if lr, ok := s.Reader.(*io.LimitedReader); ok {
		return io.Copy(w, lr)
	}
	return io.Copy(w, s.f)
}

// Get implements blob.Bucket.
func (b *Bucket) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, blob.Attrs, error) {
	f, a, err := b.open(key)
	if err != nil {
		return nil, a, err
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, a, err
		}
	}
	var r io.Reader = f
	if length >= 0 {
		r = &io.LimitedReader{R: f, N: length}
	}
	return section{r, f}, a, nil
}

// Stat implements blob.Bucket.
func (b *Bucket) Stat(ctx context.Context, key string) (blob.Attrs, error) {
	f, a, err := b.open(key)
	if err != nil {
		return a, err
	}
	f.Close()
	return a, nil
}

// Delete implements blob.Bucket. Directories left empty are removed.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	if err := blob.CheckKey(key); err != nil {
		return err
	}
	p := objPath(key)
	st, err := b.root.Lstat(p)
	if err != nil || st.IsDir() {
		return fmt.Errorf("%s: %w", key, blob.ErrNotFound)
	}
	if err := b.root.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w", key, blob.ErrNotFound)
		}
		return err
	}
	for d := path.Dir(p); d != "o" && d != "."; d = path.Dir(d) {
		if b.root.Remove(d) != nil { // fails when not empty: stop
			break
		}
	}
	return nil
}

// List implements blob.Bucket. It walks the directories in key order
// (a directory's keys follow its name and a "/"), reading only those that
// can hold keys under prefix and after after, and stops when fn fails: a
// page costs the directories on its way, not the whole tree.
func (b *Bucket) List(ctx context.Context, prefix, after string, fn func(blob.Attrs) error) error {
	dir := "o"
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		if err := blob.CheckKey(prefix[:i]); err != nil {
			return err
		}
		dir = "o/" + prefix[:i]
	}
	if err := b.list(ctx, dir, prefix, after, fn); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	return nil
}

// list calls fn for the objects under dir (a path in the root) whose
// keys start with prefix and sort after after, in key order.
func (b *Bucket) list(ctx context.Context, dir, prefix, after string, fn func(blob.Attrs) error) error {
	ents, err := fs.ReadDir(b.root.FS(), dir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil // removed meanwhile, never made, or an object's name
	}
	if err != nil {
		return err
	}
	sortKey := func(e fs.DirEntry) string {
		if e.IsDir() {
			return e.Name() + "/"
		}
		return e.Name()
	}
	slices.SortFunc(ents, func(x, y fs.DirEntry) int { return strings.Compare(sortKey(x), sortKey(y)) })
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := dir + "/" + e.Name()
		key := strings.TrimPrefix(p, "o/")
		if e.IsDir() {
			key += "/"
			// skip it unless it can hold a key under prefix, and one
			// after after: every key in it starts with key, so if after
			// does not and sorts later, so does every key in it
			if !strings.HasPrefix(key, prefix) && !strings.HasPrefix(prefix, key) ||
				after >= key && !strings.HasPrefix(after, key) {
				continue
			}
			if err := b.list(ctx, p, prefix, after, fn); err != nil {
				return err
			}
			continue
		}
		if !strings.HasPrefix(key, prefix) || key <= after || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if err := fn(blob.Attrs{Key: key, Size: info.Size(), Modified: info.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// objectAbove reports whether a folder dst is below is an object (a file).
func (b *Bucket) objectAbove(dst string) bool {
	for d := path.Dir(dst); d != "." && d != "/"; d = path.Dir(d) {
		if st, err := b.root.Lstat(d); err == nil && !st.IsDir() {
			return true
		}
	}
	return false
}
