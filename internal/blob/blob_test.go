package blob

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckKey(t *testing.T) {
	good := []string{"a", "a/b/c.txt", "inputs/story.txt", "ü/ñ", "a..b/c"}
	bad := []string{"", "/etc/passwd", "../x", "a/../../b", "a/./b", "a//b", "a/", `a\b`, "a\x00b", "a\nb", strings.Repeat("x", 1025), "..", "."}
	for _, k := range good {
		if err := CheckKey(k); err != nil {
			t.Errorf("CheckKey(%q) = %v, want nil", k, err)
		}
	}
	for _, k := range bad {
		if err := CheckKey(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("CheckKey(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
}

func FuzzCheckKey(f *testing.F) {
	f.Add("a/b")
	f.Add("../a")
	f.Fuzz(func(t *testing.T, k string) {
		if CheckKey(k) != nil {
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
	})
}
