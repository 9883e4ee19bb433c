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

	// List calls fn for each object whose key starts with prefix, in key
	// order, until fn returns an error (which List returns).
	List(ctx context.Context, prefix string, fn func(Attrs) error) error
}

// CheckKey reports whether key is a safe relative path: not empty, at most
// 1024 bytes of UTF-8, no leading or trailing slash, no empty, "." or ".."
// segment, no backslash and no control character.
func CheckKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why) }
	switch {
	case key == "":
		return bad("empty")
	case len(key) > 1024:
		return bad("longer than 1024 bytes")
	case !utf8.ValidString(key):
		return bad("not UTF-8")
	case strings.HasPrefix(key, "/"):
		return bad("must not start with /")
	case strings.HasSuffix(key, "/"):
		return bad("must not end with /")
	case strings.ContainsRune(key, '\\'):
		return bad("must not contain a backslash")
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return bad("must not contain control characters or NUL")
		}
	}
	for _, seg := range strings.Split(key, "/") {
		switch seg {
		case "":
			return bad("must not contain an empty segment")
		case ".", "..":
			return bad("must not contain . or .. segments")
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
	// SignPut returns a URL that PUTs the object for ttl.
	SignPut(ctx context.Context, key string, ttl time.Duration) (string, error)
	// StartMultipart starts a multipart upload of parts parts and returns
	// its id and a presigned PUT URL for each part, in order. sha256, if
	// not empty, becomes the object's recorded SHA-256.
	StartMultipart(ctx context.Context, key string, parts int, sha256 string, ttl time.Duration) (uploadID string, partURLs []string, err error)
	// CompleteMultipart assembles the parts (their ETags, in order).
	CompleteMultipart(ctx context.Context, key, uploadID string, etags []string) (Attrs, error)
	// AbortMultipart drops an unfinished upload.
	AbortMultipart(ctx context.Context, key, uploadID string) error
}
