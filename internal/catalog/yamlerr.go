package catalog

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
)

// yamlParserProblems are the problems yaml.v3's parser reports (its
// parserc.go), as against its scanner's. It counts their line from 0
// where it counts the scanner's from 1, so it names the line before the
// one meant, and no line at all for the first.
var yamlParserProblems = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected <stream-start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

var yamlSyntaxError = regexp.MustCompile(`^yaml: (?:line ([0-9]+): )?(.*)$`)

// YAMLError returns err, a YAML decoder's, with the line of a syntax
// error counted from 1, as editors count it.
func YAMLError(err error) error {
	m := yamlSyntaxError.FindStringSubmatch(err.Error())
	if m == nil || !slices.Contains(yamlParserProblems, m[2]) {
		return err
	}
	line, _ := strconv.Atoi(m[1]) // "" (none): the first line, 0
	return fmt.Errorf("yaml: line %d: %s", line+1, m[2])
}
