package store

import (
	"encoding/base64"
	"errors"
	"testing"
)

// A page token is one EncodePageToken made: "s-1" (base64 "cy0x") gave an
// empty page, where other malformed tokens were refused (found by the
// seventh probe).
func TestDecodePageToken(t *testing.T) {
	for _, n := range []int64{0, 1, 42, 1 << 62} {
		if got, err := DecodePageToken(EncodePageToken(n)); err != nil || got != n {
			t.Errorf("%d: %d, %v", n, got, err)
		}
	}
	for _, raw := range []string{"s-1", "s+1", "s01", "s", "x1", "s1 ", "s99999999999999999999"} {
		tok := base64.RawURLEncoding.EncodeToString([]byte(raw))
		if _, err := DecodePageToken(tok); !errors.Is(err, ErrBadPageToken) {
			t.Errorf("%q (%s): %v, want ErrBadPageToken", raw, tok, err)
		}
	}
}
