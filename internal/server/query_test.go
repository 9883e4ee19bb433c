package server

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Every query parameter a route's handler reads is in openapi.json for
// that route: the server refuses the others (checkQuery), so one the
// document left out would refuse requests the handler serves. The
// handlers are read from this package's source: the route table names
// each route's handler, and a parameter is a string literal given to Get
// or Has of a URL's Query(), or an index of one, in the handler or in a
// function it calls with the request.
func TestRoutesReadOnlyDocumentedParameters(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	funcs := map[string]*ast.FuncDecl{}
	var table *ast.FuncDecl
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
				funcs[fd.Name.Name] = fd
				if fd.Name.Name == "routeTable" {
					table = fd
				}
			}
		}
	}
	if table == nil {
		t.Fatal("no routeTable")
	}
	// reads returns the parameters fn reads, and those of the functions
	// it calls with the request (r) among their arguments.
	var reads func(name string, seen map[string]bool) []string
	reads = func(name string, seen map[string]bool) []string {
		fd := funcs[name]
		if fd == nil || seen[name] {
			return nil
		}
		seen[name] = true
		var out []string
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Get" || sel.Sel.Name == "Has") && len(n.Args) == 1 && isQuery(sel.X, fd) {
					if lit, ok := n.Args[0].(*ast.BasicLit); ok {
						v, _ := strconv.Unquote(lit.Value)
						out = append(out, v)
					}
				}
				if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "queryTrue" && len(n.Args) == 2 {
					if lit, ok := n.Args[1].(*ast.BasicLit); ok {
						v, _ := strconv.Unquote(lit.Value)
						out = append(out, v)
					}
				}
				if passesRequest(n) {
					out = append(out, reads(callee(n), seen)...)
				}
			case *ast.IndexExpr:
				if lit, ok := n.Index.(*ast.BasicLit); ok && lit.Kind == token.STRING && isQuery(n.X, fd) {
					v, _ := strconv.Unquote(lit.Value)
					out = append(out, v)
				}
			}
			return true
		})
		return out
	}
	routeRE := regexp.MustCompile(`^([A-Z]+) (.*)$`)
	checked := 0
	ast.Inspect(table.Body, func(n ast.Node) bool {
		cl, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		var pattern, handler string
		for _, e := range cl.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			switch k := kv.Key.(*ast.Ident); {
			case k == nil:
			case k.Name == "pattern":
				if lit, ok := kv.Value.(*ast.BasicLit); ok {
					pattern, _ = strconv.Unquote(lit.Value)
				}
			case k.Name == "h":
				if sel, ok := kv.Value.(*ast.SelectorExpr); ok {
					handler = sel.Sel.Name
				}
			}
		}
		m := routeRE.FindStringSubmatch(pattern)
		if m == nil || handler == "" {
			return true
		}
		takes, documented := queryParams[m[1]+" "+strings.ReplaceAll(m[2], "{path...}", "{path}")]
		if !documented {
			return true
		}
		checked++
		for _, p := range reads(handler, map[string]bool{}) {
			if takes[p] == "" {
				t.Errorf("%s (%s) reads query parameter %q, which openapi.json does not give it", pattern, handler, p)
			}
		}
		return true
	})
	if checked < 30 {
		t.Fatalf("only %d routes checked", checked)
	}
}

// isQuery is whether x is a URL's Query() (r.URL.Query()), or a variable
// of fd assigned one.
func isQuery(x ast.Expr, fd *ast.FuncDecl) bool {
	if c, ok := x.(*ast.CallExpr); ok {
		if sel, ok := c.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Query" {
			return true
		}
	}
	id, ok := x.(*ast.Ident)
	if !ok {
		return false
	}
	found := false
	ast.Inspect(fd.Body, func(n ast.Node) bool {
		as, ok := n.(*ast.AssignStmt)
		if !ok {
			return true
		}
		for i, l := range as.Lhs {
			if li, ok := l.(*ast.Ident); ok && li.Name == id.Name && i < len(as.Rhs) && isQuery(as.Rhs[i], &ast.FuncDecl{Body: &ast.BlockStmt{}}) {
				found = true
			}
		}
		return true
	})
	return found
}

// passesRequest is whether a call has the request (r) among its
// arguments.
func passesRequest(c *ast.CallExpr) bool {
	return slices.ContainsFunc(c.Args, func(a ast.Expr) bool { id, ok := a.(*ast.Ident); return ok && id.Name == "r" })
}

// callee is the name of the function or method a call calls.
func callee(c *ast.CallExpr) string {
	switch f := c.Fun.(type) {
	case *ast.Ident:
		return f.Name
	case *ast.SelectorExpr:
		return f.Sel.Name
	}
	return ""
}
