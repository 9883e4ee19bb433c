// Package blob defines Bucket, where hpcgate keeps files: users' uploads and
// jobs' outputs. Keys are slash-separated relative paths, checked by
// CheckKey.
//
// Implementations: fileblob (a local directory). Every implementation passes
// the conformance suite in blobtest.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrNotFound is returned (wrapped) for a key that does not exist.
var ErrNotFound = errors.New("object not found")

// ErrInvalidKey is returned (wrapped) for a key CheckKey refuses.
var ErrInvalidKey = errors.New("invalid key")

// ErrKeyConflict is returned (wrapped) by a Put whose key cannot be an
// object because of others: in a file store, a part of it names an object
// ("a" for "a/b"), or objects are stored below it ("a/b" for "a").
var ErrKeyConflict = errors.New("the key conflicts with another object's")

// Attrs describe a stored object.
type Attrs struct {
	Key      string
	Size     int64
	SHA256   string // hex; empty if unknown
	Modified time.Time
}

// Bucket stores objects. Every method is safe for concurrent use.
type Bucket interface {
	// Put stores r's bytes under key, replacing any object there. The
	// object appears whole or not at all: a failed or canceled Put leaves
	// the old object (or none). It returns the new object's attributes,
	// with its SHA-256.
	Put(ctx context.Context, key string, r io.Reader) (Attrs, error)

	// Get returns a reader of length bytes from offset (length < 0: to the
	// end), and the object's attributes; ErrNotFound if there is none.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, Attrs, error)

	// Stat returns the object's attributes, or ErrNotFound.
	Stat(ctx context.Context, key string) (Attrs, error)

	// Delete removes the object; ErrNotFound if there is none.
	Delete(ctx context.Context, key string) error

	// List calls fn for each object whose key starts with prefix and sorts
	// after after (none: ""), in key order, until fn returns an error (which
	// List returns). A page that starts after the last key of the page
	// before does not list the pages before again (a file store still reads
	// each directory on its way whole: a flat one of N files costs N).
	List(ctx context.Context, prefix, after string, fn func(Attrs) error) error
}

// Limits of keys and of the paths users give, chosen so that every
// backend can store every key that passes: a file system's name limit for
// one segment (NAME_MAX), S3's for a whole key. A user's path becomes part
// of a longer key (under "users/NAME/files/" or "jobs/ID/outputs/"), so it
// is held to MaxPath, which leaves room for the longest such prefix.
const (
	MaxSegment = 255  // bytes in one segment of a key or path
	MaxKey     = 1024 // bytes in a whole key
	MaxPath    = 768  // bytes in a path a user gives
)

// CheckKey reports whether key is a safe relative path that every backend
// can store: see CheckPath, with at most MaxKey bytes. Its errors wrap
// ErrInvalidKey.
func CheckKey(key string) error {
	if err := checkRel(key, MaxKey); err != nil {
		return fmt.Errorf("%w %q: %v", ErrInvalidKey, key, err)
	}
	return nil
}

// CheckPath reports whether p is a path a user may give for a file, an
// input or an output: not empty, at most MaxPath bytes of UTF-8, each
// segment at most MaxSegment bytes, no leading or trailing slash, no
// empty, "." or ".." segment, no backslash and no control character. Its
// errors are messages for people, naming the rule broken. This is the one
// check of such paths; the keys built from them pass CheckKey.
func CheckPath(p string) error { return checkRel(p, MaxPath) }

func checkRel(p string, maxLen int) error {
	switch {
	case p == "":
		return errors.New("must not be empty")
	case len(p) > maxLen:
		return fmt.Errorf("is %d bytes long, more than the limit of %d", len(p), maxLen)
	case !utf8.ValidString(p):
		return errors.New("must be UTF-8")
	case strings.HasPrefix(p, "/"):
		return errors.New("must be relative (no leading /)")
	case strings.HasSuffix(p, "/"):
		return errors.New("must not end with /")
	case strings.ContainsRune(p, '\\'):
		return errors.New("must not contain a backslash")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return errors.New("must not contain NUL or control characters")
		}
	}
	for _, seg := range strings.Split(p, "/") {
		switch {
		case seg == "":
			return errors.New("must not contain an empty segment (//)")
		case seg == "." || seg == "..":
			return errors.New(`must not contain "." or ".." segments`)
		case len(seg) > MaxSegment:
			return fmt.Errorf("has a segment of %d bytes, more than the limit of %d", len(seg), MaxSegment)
		}
	}
	return nil
}

// Signer is what a Bucket on an object store with presigned URLs can do
// besides: hand out short-lived URLs so that bulk data goes straight
// between clients (or jobs) and the store, never through the gateway, and
// never with the store's credentials.
type Signer interface {
	// SignGet returns a URL that GETs the object for ttl.
	SignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
	// SignPut returns a URL that PUTs the object, of exactly size bytes,
	// for ttl.
	SignPut(ctx context.Context, key string, size int64, ttl time.Duration) (string, error)
	// StartMultipart starts a multipart upload of size bytes in parts of
	// partSize (the last one the rest) and returns its id and a presigned
	// PUT URL for each part, in order, each for exactly its part's length.
	// sha256, if not empty, becomes the object's recorded SHA-256.
	StartMultipart(ctx context.Context, key string, size, partSize int64, sha256 string, ttl time.Duration) (uploadID string, partURLs []string, err error)
	// UploadedSize is the size of the parts sent so far to an unfinished
	// upload, or an error wrapping ErrNotFound if there is no such upload.
	UploadedSize(ctx context.Context, key, uploadID string) (int64, error)
	// CompleteMultipart assembles the parts (their ETags, in order).
	CompleteMultipart(ctx context.Context, key, uploadID string, etags []string) (Attrs, error)
	// AbortMultipart drops an unfinished upload.
	AbortMultipart(ctx context.Context, key, uploadID string) error
	// AbortStale drops up to limit unfinished uploads started before
	// before, and returns how many it dropped: their parts are stored,
	// and counted nowhere, until they are.
	AbortStale(ctx context.Context, before time.Time, limit int) (int, error)
}
