package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/blob"
)

// Conditional requests on files and outputs (RFC 9110 §13): a file's
// ETag is its SHA-256, quoted. They were ignored though every answer
// carried ETag and Last-Modified: a download resumed with If-Range after
// the file changed joined old and new bytes, and PUT with If-None-Match: *
// replaced a file (found by the seventh probe).

// etagOf is a's ETag, "" when the store knows no checksum.
func etagOf(a blob.Attrs) string {
	if a.SHA256 == "" {
		return ""
	}
	return `"` + a.SHA256 + `"`
}

// etagsMatch reports whether the If-Match or If-None-Match value list
// names etag (of an object that exists), or is "*". Weak comparison
// ignores W/ prefixes (for If-None-Match); strong takes none.
func etagsMatch(list, etag string, exists, weak bool) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		if t == "*" {
			return exists
		}
		if w, ok := strings.CutPrefix(t, "W/"); ok {
			if !weak {
				continue
			}
			t = w
		}
		if etag != "" && t == etag {
			return true
		}
	}
	return false
}

// failed is the answer to a precondition that does not hold.
func failed(header string) error {
	return errorf(http.StatusPreconditionFailed, api.CodePreconditionFailed, "%s does not hold: the file is not the one you named (read it again)", header)
}

// modifiedAfter reports whether mod is later than the HTTP date of
// header h of r; ok is false when h is absent or no date.
func modifiedAfter(r *http.Request, h string, mod time.Time) (after, ok bool) {
	t, err := http.ParseTime(r.Header.Get(h))
	if err != nil {
		return false, false
	}
	return mod.Truncate(time.Second).After(t), true
}

// readPreconditions checks r's preconditions against the object a (GET,
// HEAD): a 412 error, notModified for a 304, and whether a Range header
// stands (If-Range).
func readPreconditions(r *http.Request, a blob.Attrs) (notModified, useRange bool, err error) {
	etag := etagOf(a)
	if im := r.Header.Get("If-Match"); im != "" {
		if !etagsMatch(im, etag, true, false) {
			return false, false, failed("If-Match")
		}
	} else if after, ok := modifiedAfter(r, "If-Unmodified-Since", a.Modified); ok && after {
		return false, false, failed("If-Unmodified-Since")
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if etagsMatch(inm, etag, true, true) {
			return true, false, nil
		}
	} else if after, ok := modifiedAfter(r, "If-Modified-Since", a.Modified); ok && !after {
		return true, false, nil
	}
	useRange = r.Header.Get("Range") != ""
	if ir := r.Header.Get("If-Range"); ir != "" && useRange {
		if strings.HasPrefix(ir, `"`) || strings.HasPrefix(ir, "W/") {
			useRange = etag != "" && ir == etag // strong only
		} else {
			t, err := http.ParseTime(ir)
			useRange = err == nil && a.Modified.Truncate(time.Second).Equal(t)
		}
	}
	return false, useRange, nil
}

// writePreconditions checks the If-Match, If-Unmodified-Since and
// If-None-Match of r (PUT, DELETE) against the object at key as it is
// now: call it in the key's turn.
func (s *Server) writePreconditions(ctx context.Context, r *http.Request, key string) error {
	im, inm := r.Header.Get("If-Match"), r.Header.Get("If-None-Match")
	if im == "" && inm == "" && r.Header.Get("If-Unmodified-Since") == "" {
		return nil
	}
	a, err := s.bucket.Stat(ctx, key)
	exists := err == nil
	if err != nil && !errors.Is(err, blob.ErrNotFound) {
		return err
	}
	if im != "" && !etagsMatch(im, etagOf(a), exists, false) {
		return failed("If-Match")
	}
	if after, ok := modifiedAfter(r, "If-Unmodified-Since", a.Modified); im == "" && exists && ok && after {
		return failed("If-Unmodified-Since")
	}
	if inm != "" && etagsMatch(inm, etagOf(a), exists, true) {
		return failed("If-None-Match")
	}
	return nil
}
