package server

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
)

// signIn makes a web session from token and returns its cookie and key.
func (h *harness) signIn(token string) (*http.Cookie, string) {
	h.t.Helper()
	r := h.do("POST", "/v1/sessions", token, nil).want(h.t, http.StatusCreated)
	var s api.Session
	r.decode(h.t, &s)
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == sessionCookie {
			return c, s.Key
		}
	}
	h.t.Fatalf("no session cookie in %q", r.header["Set-Cookie"])
	return nil, ""
}

// withCookie sends a request with the session cookie c and extra headers.
func (h *harness) withCookie(c *http.Cookie, method, path string, body any, headers ...string) *response {
	h.t.Helper()
	return h.do(method, path, "", body, append([]string{"Cookie", c.Name + "=" + c.Value}, headers...)...)
}

// A token signs in: the session is a cookie the page cannot read, for
// this host only, never sent cross-site, with at most the token's scopes
// and life; requests with it work, and the secret is nowhere in the body.
func TestSessionCookie(t *testing.T) {
	h := newHarness(t, nil)
	expires := time.Now().Add(time.Hour).Truncate(time.Second)
	tok := h.token("sam", expires, api.ScopeJobsRead, api.ScopeFilesRead)
	r := h.do("POST", "/v1/sessions", tok, nil).want(t, http.StatusCreated)
	var s api.Session
	r.decode(t, &s)
	cookies := (&http.Response{Header: r.header}).Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %q", r.header["Set-Cookie"])
	}
	c := cookies[0]
	if c.Name != sessionCookie || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
		t.Fatalf("cookie %+v: want __Host-, HttpOnly, Secure, SameSite=Strict, Path=/, no Domain", c)
	}
	if strings.Contains(string(r.body), c.Value) {
		t.Fatal("the session's secret is in the body")
	}
	if s.Key == "" || s.Key == c.Value {
		t.Fatalf("the session's key %q: want one apart from the cookie", s.Key)
	}
	if s.User != "sam" || !slices.Equal(s.Scopes, []string{api.ScopeJobsRead, api.ScopeFilesRead}) || s.ExpiresAt.After(expires) {
		t.Fatalf("session %+v: want sam's scopes, ending by %v", s, expires)
	}
	var me api.Me
	h.withCookie(c, "GET", "/v1/me", nil).want(t, http.StatusOK).decode(t, &me)
	if me.User != "sam" || me.TokenID != s.TokenID {
		t.Fatalf("me with the cookie: %+v", me)
	}
	// the session lacks what its token lacked
	h.withCookie(c, "POST", "/v1/jobs", map[string]any{"template": "hello"}, api.CSRFHeader, s.Key).want(t, http.StatusForbidden)
	// a token with no end still makes a session of at most 12 hours
	r = h.do("POST", "/v1/sessions", h.token("sam", time.Time{}, api.ScopeJobsRead), nil).want(t, http.StatusCreated)
	r.decode(t, &s)
	if d := time.Until(s.ExpiresAt); d > sessionLife || d < sessionLife-time.Minute {
		t.Fatalf("a session of a token without end ends in %v, want %v", d, sessionLife)
	}
}

// sessionKey is the key of a new session of token.
func (h *harness) sessionKey(token string) string {
	_, key := h.signIn(token)
	return key
}

// Requests with the cookie that change something need the CSRF header and,
// when the browser says where they come from, the gateway's own origin;
// a session does not make another session; a job token makes none.
func TestSessionForgeryRefused(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token("sam", time.Time{}, api.ScopeJobsRead, api.ScopeJobsWrite, api.ScopeFilesRead, api.ScopeFilesWrite)
	c, key := h.signIn(tok)
	job := map[string]any{"template": "hello", "parameters": map[string]any{"name": "x"}, "hold": true}
	for _, tc := range []struct {
		name    string
		headers []string
		want    int
	}{
		{"no CSRF header", nil, http.StatusForbidden},
		{"another site's origin", []string{api.CSRFHeader, key, "Origin", "https://evil.example"}, http.StatusForbidden},
		{"same origin", []string{api.CSRFHeader, key, "Origin", h.http.URL}, http.StatusCreated},
		{"no origin", []string{api.CSRFHeader, key}, http.StatusCreated},
		// the cookie alone, as a program on another port of the host
		// would have it (found by the eighth probe)
		{"any header but the key", []string{api.CSRFHeader, "1"}, http.StatusUnauthorized},
		{"another session's key", []string{api.CSRFHeader, h.sessionKey(tok)}, http.StatusUnauthorized},
	} {
		if r := h.withCookie(c, "POST", "/v1/jobs", job, tc.headers...); r.status != tc.want {
			t.Errorf("%s: %d, want %d: %s", tc.name, r.status, tc.want, r.body)
		}
	}
	// nothing was made by the refused ones
	var page api.Page[api.Job]
	h.do("GET", "/v1/jobs", tok, nil).want(t, http.StatusOK).decode(t, &page)
	if len(page.Items) != 2 {
		t.Fatalf("%d jobs, want the 2 taken", len(page.Items))
	}
	// reads need no header, but not from another site's page
	h.withCookie(c, "GET", "/v1/jobs", nil).want(t, http.StatusOK)
	h.withCookie(c, "GET", "/v1/jobs", nil, "Origin", "https://evil.example").want(t, http.StatusForbidden)
	h.withCookie(c, "POST", "/v1/sessions", nil, api.CSRFHeader, key).want(t, http.StatusUnauthorized)
	h.withCookie(c, "GET", "/v1/jobs", nil, "Origin", "ftp://"+strings.TrimPrefix(h.http.URL, "http://")).want(t, http.StatusForbidden)
	// a session makes no token and no secret: a stolen cookie would
	// otherwise become a token that outlives signing out
	h.withCookie(c, "POST", "/v1/tokens", map[string]any{"scopes": []string{api.ScopeJobsRead}}, api.CSRFHeader, key).want(t, http.StatusForbidden)
	h.withCookie(c, "POST", "/v1/webhook-secret", nil, api.CSRFHeader, key).want(t, http.StatusForbidden)
	// nor as a bearer: the cookie's secret sent as a token made a token, a
	// secret, and sessions that revoking the first token did not end
	h.do("POST", "/v1/tokens", c.Value, map[string]any{"scopes": []string{api.ScopeJobsRead}}).want(t, http.StatusForbidden)
	h.do("POST", "/v1/webhook-secret", c.Value, nil).want(t, http.StatusForbidden)
	h.do("POST", "/v1/sessions", c.Value, nil).want(t, http.StatusForbidden)
	// and the cookie's secret as a bearer changes nothing without the key
	h.do("POST", "/v1/jobs", c.Value, job).want(t, http.StatusUnauthorized)
	h.do("POST", "/v1/jobs", c.Value, job, api.CSRFHeader, key).want(t, http.StatusCreated)
	_, jt := h.jobToken("sam", nil)
	h.do("POST", "/v1/sessions", jt, nil).want(t, http.StatusForbidden)
}

// Signing out ends the session on the server: its cookie no longer works
// even if kept; the token it came from still does. Only a session's
// request can end a session.
func TestSessionSignOut(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token("sam", time.Time{}, api.ScopeJobsRead)
	c, _ := h.signIn(tok)
	h.withCookie(c, "DELETE", "/v1/sessions/current", nil).want(t, http.StatusForbidden) // no CSRF header
	// a page that lost the session's key still signs out
	r := h.withCookie(c, "DELETE", "/v1/sessions/current", nil, api.CSRFHeader, "1").want(t, http.StatusNoContent)
	if cs := (&http.Response{Header: r.header}).Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
		t.Fatalf("sign-out cookies %q: want the session's cleared", r.header["Set-Cookie"])
	}
	h.withCookie(c, "GET", "/v1/me", nil).want(t, http.StatusUnauthorized)
	h.do("GET", "/v1/me", tok, nil).want(t, http.StatusOK)
	h.do("DELETE", "/v1/sessions/current", tok, nil).want(t, http.StatusBadRequest)

	// revoking the token a session came from ends the session too; the
	// user's other sessions and tokens stay
	other := h.token("sam", time.Time{}, api.ScopeJobsRead)
	c1, _ := h.signIn(tok)
	c2, _ := h.signIn(other)
	var me api.Me
	h.do("GET", "/v1/me", tok, nil).want(t, http.StatusOK).decode(t, &me)
	h.do("DELETE", "/v1/tokens/"+me.TokenID, tok, nil).want(t, http.StatusNoContent)
	h.withCookie(c1, "GET", "/v1/me", nil).want(t, http.StatusUnauthorized)
	h.withCookie(c2, "GET", "/v1/me", nil).want(t, http.StatusOK)
	h.do("GET", "/v1/me", other, nil).want(t, http.StatusOK)
}

// The web interface's pages and assets carry a strict CSP; the API's
// unknown paths stay JSON 404s.
func TestWebInterfaceServed(t *testing.T) {
	h := newHarness(t, nil)
	for _, p := range []string{"/", "/docs", "/ui/app.js", "/ui/style.css", "/ui/vendor/swagger-ui/swagger-ui-bundle.js"} {
		r := h.do("GET", p, "", nil).want(t, http.StatusOK)
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if r.header.Get("X-Frame-Options") != "DENY" || r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", p, r.header)
		}
	}
	if r := h.do("GET", "/", "", nil); !strings.Contains(string(r.body), `src="/ui/app.js"`) || strings.Contains(string(r.body), "<script>") {
		t.Errorf("index: %s", r.body)
	}
	h.do("GET", "/ui/index.html", "", nil).want(t, http.StatusNotFound)
	h.do("GET", "/ui/../../go.mod", "", nil).want(t, http.StatusBadRequest) // never a redirect to another path
	if r := h.do("GET", "/nothing-here", "", nil).want(t, http.StatusNotFound); r.problem.Code != api.CodeNotFound {
		t.Errorf("an unknown path: %s", r.body)
	}
}
