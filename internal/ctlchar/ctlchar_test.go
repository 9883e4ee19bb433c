package ctlchar

import (
	"bytes"
	"io"
	"testing"
)

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain name":                 "plain name",
		"two\nlines\tand a tab":      "two\nlines\tand a tab",
		"evil\x1b]0;T\x07\x1b[2J":    `evil\x1b]0;T\x07\x1b[2J`,
		"del\x7f c1\u009b31m":        `del\x7f c1\u009b31m`,
		"éß 日本 ok":                   "éß 日本 ok",
		"cr\roverwrite":              `cr\x0doverwrite`,
		"bad utf-8 \xff stays bytes": "bad utf-8 \xff stays bytes",
		"lone c1 \x9b2J":             `lone c1 \x9b2J`, // CSI to a terminal in 8-bit mode (found by review)
		// format characters: a right-to-left override, a zero-width space
		// and an isolate (found by the seventh probe)
		"safe\u202efdp.exe": `safe\u202efdp.exe`,
		"a\u200bb \u2066x":  `a\u200bb \u2066x`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %q, want %q", in, got, want)
		}
	}
	if !In("a\x1bb") || !In("a\u0085") || !In("tab\t") {
		t.Error("In misses a control character")
	}
	if In("plain é") || In("עברית العربية 日本") {
		t.Error("In finds one in plain text")
	}
	if !In("safe\u202efdp.exe") || !In("zero\u200bwidth") || !In("bom\ufeff") {
		t.Error("In misses a format character")
	}
}

// writeSplit writes s to a new writer of out in pieces of n bytes.
func writeSplit(mk func(io.Writer) (io.Writer, func() error), s string, n int) string {
	var out bytes.Buffer
	w, flush := mk(&out)
	for i := 0; i < len(s); i += n {
		w.Write([]byte(s[i:min(i+n, len(s))]))
	}
	flush()
	return out.String()
}

func TestWriterWhateverTheSplits(t *testing.T) {
	mk := func(w io.Writer) (io.Writer, func() error) { x := NewWriter(w); return x, x.Flush }
	s := "job \x1b]52;c;aGk=\x07 é\u009b2J 日本\x7f \x9b1m \u202eend\n"
	want := Quote(s)
	for n := 1; n <= len(s); n++ {
		if got := writeSplit(mk, s, n); got != want {
			t.Fatalf("in pieces of %d: %q, want %q", n, got, want)
		}
	}
}

func TestLogWriter(t *testing.T) {
	mk := func(w io.Writer) (io.Writer, func() error) { x := NewLogWriter(w); return x, x.Flush }
	for in, want := range map[string]string{
		"\x1b[31mred\x1b[0m and \x1b[1;38;5;202mbold\x1b[m\n":   "\x1b[31mred\x1b[0m and \x1b[1;38;5;202mbold\x1b[m\n",
		"progress 10%\rprogress 20%\b\b\t\n":                    "progress 10%\rprogress 20%\b\b\t\n",
		"title \x1b]0;pwned\x07 clip \x1b]52;c;aGk=\x07":        `title \x1b]0;pwned\x07 clip \x1b]52;c;aGk=\x07`,
		"clear \x1b[2J home \x1b[H link \x1b]8;;http://x\x1b\\": `clear \x1b[2J home \x1b[H link \x1b]8;;http://x\x1b\`,
		"c1 csi \u009b2J bell \x07 del \x7f":                    `c1 csi \u009b2J bell \x07 del \x7f`,
		"ends in an escape \x1b[3":                              `ends in an escape \x1b[3`,
		"日本 é \xff":                                             "日本 é \xff",
		"lone \x9b2J":                                           `lone \x9b2J`,
	} {
		for n := 1; n <= len(in); n++ {
			if got := writeSplit(mk, in, n); got != want {
				t.Fatalf("%q in pieces of %d: %q, want %q", in, n, got, want)
			}
		}
	}
}
