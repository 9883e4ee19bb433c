// Package ctlchar keeps control characters out of what a terminal shows.
// A job's name, a label, a token's name or a job's error printed as they
// are could retitle the reader's terminal, clear it, write its clipboard
// (OSC 52) or spoof lines, and an admin reads other users' names: the
// gateway refuses control characters in names and labels (In), and the
// CLI writes whatever it prints with them escaped (Quote, Writer), and a
// job's log on a terminal with all but its colours escaped (LogWriter).
package ctlchar

import (
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Refusal is what the gateway answers for a name or label with a control
// or format character.
const Refusal = "may not hold control characters (such as ESC or a newline) or invisible format characters (such as a right-to-left override or a zero-width space): names and labels are shown on terminals"

// Is reports whether r is a control character: C0, DEL or C1.
func Is(r rune) bool { return r < 0x20 || r >= 0x7f && r < 0xa0 }

// IsFormat reports whether r is an invisible format character (Unicode's
// Cf): a right-to-left override showed "safe\u202efdp.exe" as
// "safeexe.pdf", and a zero-width space made two names that look alike
// (found by the seventh probe).
func IsFormat(r rune) bool { return r >= 0xa0 && unicode.Is(unicode.Cf, r) }

// In reports whether s has a control or format character.
func In(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return Is(r) || IsFormat(r) }) >= 0
}

// Quote returns s with every control character but newline and tab, and
// every format character, written as a Go escape (\x1b, \u009b,
// \u202e).
func Quote(s string) string {
	if strings.IndexFunc(s, shown) < 0 && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case shown(r):
			escape(&b, r)
		case r == utf8.RuneError && s[i] >= 0x80 && s[i] < 0xa0:
			fmt.Fprintf(&b, `\x%02x`, s[i]) // a lone C1 byte
		case r == utf8.RuneError:
			b.WriteByte(s[i]) // another invalid byte, as it was
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// shown is whether r is a character Quote escapes.
func shown(r rune) bool { return Is(r) && r != '\n' && r != '\t' || IsFormat(r) }

func escape(w io.Writer, r rune) {
	if r < 0x80 {
		fmt.Fprintf(w, `\x%02x`, r)
	} else {
		fmt.Fprintf(w, `\u%04x`, r)
	}
}

// Writer writes what passes with control characters escaped as Quote
// does. A C1 character split between two writes is held until the next;
// Flush writes what is held.
type Writer struct {
	w    io.Writer
	held []byte
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write implements io.Writer; it reports all of p written unless w fails.
func (e *Writer) Write(p []byte) (int, error) {
	buf := append(e.held, p...)
	e.held = nil
	out := make([]byte, 0, len(buf))
	for i := 0; i < len(buf); {
		c := buf[i]
		if c < utf8.RuneSelf {
			if shown(rune(c)) {
				out = fmt.Appendf(out, `\x%02x`, c)
			} else {
				out = append(out, c)
			}
			i++
			continue
		}
		if !utf8.FullRune(buf[i:]) {
			e.held = append(e.held, buf[i:]...) // the rest comes with the next write
			break
		}
		var n int
		out, n = appendNonASCII(out, buf[i:], true)
		i += n
	}
	if _, err := e.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// appendNonASCII appends the character b starts with (not ASCII, and
// whole), escaped if it is a control character, or a format character
// when format is set, and returns how many bytes of b it took. A lone
// byte 0x80 to 0x9f is a C1 control to a terminal in 8-bit mode (0x9b is
// CSI): it is escaped too.
func appendNonASCII(out, b []byte, format bool) ([]byte, int) {
	r, n := utf8.DecodeRune(b)
	switch {
	case r != utf8.RuneError && (Is(r) || format && IsFormat(r)):
		return fmt.Appendf(out, `\u%04x`, r), n
	case r == utf8.RuneError && n == 1 && b[0] < 0xa0:
		return fmt.Appendf(out, `\x%02x`, b[0]), n
	}
	return append(out, b[:n]...), n
}

// Flush writes what is held of a character split at the end.
func (e *Writer) Flush() error {
	if len(e.held) == 0 {
		return nil
	}
	_, err := e.w.Write(e.held)
	e.held = nil
	return err
}

// LogWriter writes a job's log for a terminal: newlines, tabs, carriage
// returns and backspaces (progress bars) and colours (SGR: ESC [ ... m)
// pass, every other control character or sequence is escaped. An escape
// sequence split between two writes is held until the next; Flush writes
// what is held.
type LogWriter struct {
	w    io.Writer
	held []byte
}

// NewLogWriter returns a LogWriter to w.
func NewLogWriter(w io.Writer) *LogWriter { return &LogWriter{w: w} }

// maxSGR bounds a colour sequence held between writes.
const maxSGR = 64

// Write implements io.Writer; it reports all of p written unless w fails.
func (l *LogWriter) Write(p []byte) (int, error) {
	buf := append(l.held, p...)
	l.held = nil
	out := make([]byte, 0, len(buf))
	for i := 0; i < len(buf); {
		c := buf[i]
		switch {
		case c == 0x1b:
			n, complete := sgr(buf[i:])
			if !complete && len(buf)-i < maxSGR {
				l.held = append(l.held, buf[i:]...)
				i = len(buf)
				continue
			}
			if n > 0 {
				out = append(out, buf[i:i+n]...)
				i += n
				continue
			}
			out = append(out, `\x1b`...)
			i++
		case c == '\n' || c == '\t' || c == '\r' || c == '\b':
			out = append(out, c)
			i++
		case c < 0x20 || c == 0x7f:
			out = fmt.Appendf(out, `\x%02x`, c)
			i++
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		case !utf8.FullRune(buf[i:]):
			l.held = append(l.held, buf[i:]...)
			i = len(buf)
		default:
			var n int
			out, n = appendNonASCII(out, buf[i:], false) // a log's own text may hold format characters (right-to-left marks)
			i += n
		}
	}
	if _, err := l.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// sgr returns the length of the colour sequence b starts with (ESC [,
// digits, ';' or ':', then 'm'), 0 if it starts with none; complete is
// false when b ends before the sequence could be told.
func sgr(b []byte) (n int, complete bool) {
	if len(b) < 2 {
		return 0, false
	}
	if b[1] != '[' {
		return 0, true
	}
	for i := 2; i < len(b); i++ {
		switch c := b[i]; {
		case c >= '0' && c <= '9' || c == ';' || c == ':':
		case c == 'm':
			return i + 1, true
		default:
			return 0, true
		}
	}
	return 0, false
}

// Flush writes what is held, escaped: a sequence the log ended in.
func (l *LogWriter) Flush() error {
	if len(l.held) == 0 {
		return nil
	}
	held := l.held
	l.held = nil
	w := NewWriter(l.w)
	if _, err := w.Write(held); err != nil {
		return err
	}
	return w.Flush()
}
