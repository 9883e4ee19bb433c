package store

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
)

// ErrBadPageToken is returned (wrapped) by ListJobs for a page token it
// did not make.
var ErrBadPageToken = errors.New("malformed page token")

// EncodePageToken makes the opaque token of a list position: the sequence
// number of the last job on the page. Stores that order jobs by such a
// number share it.
func EncodePageToken(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("s" + strconv.FormatInt(seq, 10)))
}

// DecodePageToken reads a token of EncodePageToken, or returns an error
// wrapping ErrBadPageToken.
func DecodePageToken(tok string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil && len(b) >= 2 && b[0] == 's' {
		// one EncodePageToken made: no sign, no leading zero ("s-1"
		// gave an empty page, found by the seventh probe)
		if n, err := strconv.ParseInt(string(b[1:]), 10, 64); err == nil && n >= 0 && strconv.FormatInt(n, 10) == string(b[1:]) {
			return n, nil
		}
	}
	return 0, fmt.Errorf("page token %q: %w", tok, ErrBadPageToken)
}
