package cli

import (
	"io"
	"strings"
	"unicode"

	"github.com/hpcgate/hpcgate/internal/ctlchar"
)

// table lays out rows of cells in columns two spaces apart, as
// text/tabwriter did, with two differences: each cell is escaped (cell),
// since a newline or tab in a job's name or error broke its row; and a
// cell is as wide as a terminal shows it, since a CJK character takes
// two columns where tabwriter counted one.
type table struct {
	w    io.Writer
	rows [][]string
}

func newTable(w io.Writer) *table { return &table{w: w} }

// row adds a row of cells.
func (t *table) row(cells ...string) {
	r := make([]string, len(cells))
	for i, c := range cells {
		r[i] = cell(c)
	}
	t.rows = append(t.rows, r)
}

// Flush writes the rows: every cell but a row's last padded to its
// column's width and two spaces more.
func (t *table) Flush() error {
	var widths []int
	for _, r := range t.rows {
		for i, c := range r[:max(len(r)-1, 0)] {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], width(c))
		}
	}
	var b strings.Builder
	for _, r := range t.rows {
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-width(c)+2))
			}
		}
		b.WriteByte('\n')
	}
	t.rows = nil
	_, err := io.WriteString(t.w, b.String())
	return err
}

// cellEscapes writes newlines, carriage returns and tabs as Go escapes.
var cellEscapes = strings.NewReplacer("\n", `\n`, "\r", `\r`, "\t", `\t`)

// cell is s as one cell of a table or a line of CSV on a terminal: every
// control and format character escaped (\n, \t, \x1b, \u202e), so that
// it stays on its row and measures what it shows.
func cell(s string) string {
	return ctlchar.Quote(cellEscapes.Replace(s))
}

// width is the number of terminal columns s takes: two for an East Asian
// wide or fullwidth character, none for a combining mark.
func width(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case unicode.In(r, unicode.Mn, unicode.Me):
		case wide(r):
			n += 2
		default:
			n++
		}
	}
	return n
}

// wide reports whether a terminal shows r in two columns: the East Asian
// wide and fullwidth ranges (Markus Kuhn's wcwidth), and the emoji blocks.
func wide(r rune) bool {
	return r >= 0x1100 && (r <= 0x115f ||
		r == 0x2329 || r == 0x232a ||
		r >= 0x2e80 && r <= 0xa4cf && r != 0x303f ||
		r >= 0xac00 && r <= 0xd7a3 ||
		r >= 0xf900 && r <= 0xfaff ||
		r >= 0xfe10 && r <= 0xfe19 ||
		r >= 0xfe30 && r <= 0xfe6f ||
		r >= 0xff00 && r <= 0xff60 ||
		r >= 0xffe0 && r <= 0xffe6 ||
		r >= 0x1f300 && r <= 0x1f64f ||
		r >= 0x1f900 && r <= 0x1f9ff ||
		r >= 0x20000 && r <= 0x2fffd ||
		r >= 0x30000 && r <= 0x3fffd)
}
