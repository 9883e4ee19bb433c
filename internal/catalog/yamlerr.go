package catalog

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
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

// yamlTypeProblem is how yaml.v3 says a key is unknown or a value of the
// wrong kind, in Go's words: "field quotass not found in type
// config.Config", "cannot unmarshal !!str `x` into int".
var yamlTypeProblem = regexp.MustCompile("^(line [0-9]+: )(?:field (.*) not found in type .*|cannot unmarshal !!([a-z]+)(?: `(.*)`)? into (.*))$")

// yamlKinds names YAML's tags and Go's types for people.
var yamlKinds = map[string]string{"str": "text", "int": "a whole number", "float": "a number", "bool": "true or false",
	"seq": "a list", "map": "a mapping (key: value lines)", "null": "nothing", "timestamp": "a time", "binary": "binary data"}

func goKind(t string) string {
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "a whole number"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "string":
		return "text"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case t == "time.Duration":
		return "a duration such as 90s or 10m"
	}
	return "a mapping (key: value lines)" // a map or a struct
}

// YAMLError returns err, a YAML decoder's, with the line of a syntax
// error counted from 1, as editors count it, and type errors in plain
// words ("unknown key quotass", found by the eighth probe).
func YAMLError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, e := range te.Errors {
			msgs[i] = e
			if m := yamlTypeProblem.FindStringSubmatch(e); m != nil {
				if m[2] != "" {
					msgs[i] = fmt.Sprintf("%sunknown key %q", m[1], m[2])
				} else {
					what := yamlKinds[m[3]]
					if what == "" {
						what = m[3]
					}
					if m[4] != "" {
						what = strconv.Quote(m[4])
					}
					msgs[i] = fmt.Sprintf("%swant %s, not %s", m[1], goKind(m[5]), what)
				}
			}
		}
		return errors.New("yaml: " + strings.Join(msgs, "; "))
	}
	m := yamlSyntaxError.FindStringSubmatch(err.Error())
	if m == nil || !slices.Contains(yamlParserProblems, m[2]) {
		return err
	}
	line, _ := strconv.Atoi(m[1]) // "" (none): the first line, 0
	return fmt.Errorf("yaml: line %d: %s", line+1, m[2])
}
