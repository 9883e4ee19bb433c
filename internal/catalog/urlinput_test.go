package catalog

import (
	"strings"
	"testing"
)

func TestParseURLInput(t *testing.T) {
	hexSum := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		in, url, sum, err string
	}{
		{in: "https://data.example.org/mesh.tar.gz", url: "https://data.example.org/mesh.tar.gz"},
		{in: "https://data.example.org:8443/a?x=1#sha256=" + strings.ToUpper(hexSum), url: "https://data.example.org:8443/a?x=1", sum: hexSum},
		{in: "http://data.example.org/a", err: "only https:// URLs"},
		{in: "ftp://data.example.org/a", err: "neither a file path"},
		{in: "file:///etc/passwd", err: "neither a file path"},
		{in: "https:///a", err: "no host"},
		{in: "https://:443/a", err: "no host"},
		{in: "https://alice:secret@data.example.org/a", err: "user name or password"},
		{in: "https://data.example.org/a#md5=00", err: "#sha256="},
		{in: "https://data.example.org/a#sha256=abc", err: "#sha256="},
		{in: "https://data.example.org/a b", err: "spaces"},
		{in: "https://data.example.org/a\n", err: "control characters"},
		{in: "https://data.example.org/" + strings.Repeat("a", MaxURLInput), err: "longer than"},
	} {
		got, err := ParseURLInput(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseURLInput(%q) = %+v, %v; want an error saying %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got.URL != tt.url || got.SHA256 != tt.sum {
			t.Errorf("ParseURLInput(%q) = %+v, %v; want %s %s", tt.in, got, err, tt.url, tt.sum)
		}
		if !IsURL(tt.in) {
			t.Errorf("IsURL(%q) = false", tt.in)
		}
	}
	for _, p := range []string{"data/mesh.tar.gz", "job:abc/outputs/x", "a:b"} {
		if IsURL(p) {
			t.Errorf("IsURL(%q) = true for a path", p)
		}
	}
}
