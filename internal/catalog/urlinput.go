package catalog

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// MaxURLInput is the longest URL an input may be given by.
const MaxURLInput = 2048

// URLInput is an input given by URL instead of a stored file: the agent
// fetches it where the job runs, and checks SHA256 when it is set.
type URLInput struct {
	URL    string // without the fragment
	SHA256 string // lower-case hex, or ""
}

// IsURL tells whether an input's value is a URL rather than a file path
// (no file path has "//" in it).
func IsURL(v string) bool { return strings.Contains(v, "://") }

// ParseURLInput reads an input given as https://HOST/PATH, optionally with
// #sha256=HEX (the digest the fetched bytes must have).
func ParseURLInput(v string) (URLInput, error) {
	if len(v) > MaxURLInput {
		return URLInput{}, fmt.Errorf("is longer than %d bytes", MaxURLInput)
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return URLInput{}, errors.New("has spaces or control characters")
	}
	u, err := url.Parse(v)
	if err != nil {
		return URLInput{}, errors.New("is not a valid URL")
	}
	switch {
	case u.Scheme == "http":
		return URLInput{}, errors.New("is http://: only https:// URLs are fetched (what a plain http download brings can be changed on the way)")
	case u.Scheme != "https":
		return URLInput{}, errors.New("is neither a file path, a job:ID/outputs/PATH reference nor an https:// URL")
	case u.Hostname() == "" || u.Opaque != "":
		return URLInput{}, errors.New("has no host")
	case u.User != nil:
		return URLInput{}, errors.New("has a user name or password, which would be stored with the job")
	}
	in := URLInput{}
	if frag := u.EscapedFragment(); frag != "" {
		sum, ok := strings.CutPrefix(frag, "sha256=")
		if b, err := hex.DecodeString(sum); !ok || err != nil || len(b) != 32 {
			return URLInput{}, errors.New("has a fragment other than #sha256= and 64 hex digits")
		}
		in.SHA256 = strings.ToLower(sum)
	}
	u.Fragment, u.RawFragment = "", ""
	in.URL = u.String()
	return in, nil
}
