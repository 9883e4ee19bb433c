package catalog

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Size is a byte count written as a number or with a unit: 512, 64KiB,
// 100MiB, 10GiB, 1TiB (and KB, MB, GB, TB as powers of 1000).
type Size int64

var units = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// ParseSize parses a Size: a number, whole or with a fraction (1.5GiB),
// with an optional unit; the bytes are rounded down.
func ParseSize(s string) (Size, error) {
	in := strings.TrimSpace(s)
	num, mult := in, int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	bad := fmt.Errorf("bad size %q: want a number with an optional unit (B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB as powers of 1000), as 512, 1.5GiB or 100MB", in)
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n < 0 || n > (1<<62)/mult {
			return 0, bad
		}
		return Size(n * mult), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || !(f >= 0) || f*float64(mult) > 1<<62 || strings.ContainsAny(num, "eEinxp") {
		return 0, bad
	}
	return Size(f * float64(mult)), nil
}

// UnmarshalYAML implements yaml.Unmarshaler; an error names the line.
func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*z = v
	return nil
}
