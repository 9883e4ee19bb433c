// Package webui serves hpcgate's web interface and its API reference from
// files embedded in the binary: no build step, no third-party origin.
//
// The interface is plain JavaScript modules (assets/*.js) over the public
// API alone, signed in by a web session (POST /v1/sessions sets an
// HttpOnly cookie; the page never holds a secret). /docs renders the
// server's own /openapi.json with the vendored Swagger UI
// (assets/vendor/swagger-ui, rebuilt by scripts/vendor-swagger-ui.sh).
//
// Every answer carries a strict Content-Security-Policy: scripts, styles,
// fonts and connections from this origin only (and uploads to the
// gateway's own object store), no inline script or style, no framing.
package webui

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed assets
var assets embed.FS

// CSP is the Content-Security-Policy of every page and asset, with the
// origins the page may send files to besides its own (connect-src).
func CSP(uploadOrigins ...string) string {
	connect := strings.Join(append([]string{"'self'"}, uploadOrigins...), " ")
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
		"connect-src " + connect + "; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

// Handler serves the interface: GET / (the application), GET /docs (the
// API reference) and GET /ui/PATH (their assets). uploadOrigins are the
// object store's, where the page sends large files' parts straight
// (presigned URLs of POST /v1/uploads); none where the store has none.
func Handler(uploadOrigins ...string) http.Handler {
	csp := CSP(uploadOrigins...)
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is part of the build
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		switch {
		case r.URL.Path == "/":
			page(w, r, sub, "index.html")
		case r.URL.Path == "/docs":
			page(w, r, sub, "docs.html")
		case strings.HasPrefix(r.URL.Path, "/ui/"):
			p := path.Clean(strings.TrimPrefix(r.URL.Path, "/ui"))
			if strings.HasSuffix(p, ".html") || p == "/" {
				http.NotFound(w, r)
				return
			}
			// The assets change with the binary: a day's cache, revalidated.
			h.Set("Cache-Control", "public, max-age=86400, must-revalidate")
			r2 := *r
			u := *r.URL
			u.Path = p
			r2.URL = &u
			files.ServeHTTP(w, &r2)
		default:
			http.NotFound(w, r)
		}
	})
}

// page serves one HTML page, never cached: it names the assets.
func page(w http.ResponseWriter, r *http.Request, fsys fs.FS, name string) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	if r.Method != http.MethodHead {
		w.Write(b)
	}
}
