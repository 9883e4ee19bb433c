package server

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hpcgate/hpcgate/api"
)

// A session through the real server appears in the audit log in order,
// with its refusals, without any secret; only admins read it, and its
// filters and pages work.
func TestAuditSession(t *testing.T) {
	h := newHarness(t, nil)
	admin := h.token("root", time.Time{}, api.ScopeAdmin)
	alice := h.token("alice", time.Time{}, userScopes...)

	var made api.Token
	h.do("POST", "/v1/tokens", alice, map[string]any{"scopes": []string{api.ScopeJobsRead}, "name": "ci"}).want(t, http.StatusCreated).decode(t, &made)
	h.do("PUT", "/v1/files/in.txt", alice, "hello").want(t, http.StatusCreated)
	var j api.Job
	h.do("POST", "/v1/jobs", alice, map[string]any{"template": "hello", "parameters": map[string]any{"name": "a"}}).want(t, http.StatusCreated).decode(t, &j)
	h.do("POST", "/v1/jobs/"+j.ID+"/cancel", alice, nil).want(t, http.StatusOK)
	h.do("POST", "/v1/jobs/"+j.ID+"/cancel", alice, nil).want(t, http.StatusConflict) // refused: audited too
	h.do("DELETE", "/v1/tokens/"+made.ID, alice, nil).want(t, http.StatusNoContent)
	h.do("DELETE", "/v1/tokens/"+made.ID, made.Token, nil).want(t, http.StatusUnauthorized) // a revoked token
	h.do("GET", "/v1/jobs/"+j.ID, alice, nil).want(t, http.StatusOK)                        // reads are not audited

	// Non-admins may not read it.
	h.do("GET", "/v1/audit", alice, nil).want(t, http.StatusForbidden)

	list := func(q url.Values) ([]api.AuditEntry, string) {
		t.Helper()
		r := h.do("GET", "/v1/audit?"+q.Encode(), admin, nil).want(t, http.StatusOK)
		for _, secret := range []string{admin, alice, made.Token} {
			if strings.Contains(string(r.body), secret) {
				t.Fatalf("the audit log shows a token's secret: %s", r.body)
			}
		}
		var page api.Page[api.AuditEntry]
		r.decode(t, &page)
		return page.Items, page.NextPageToken
	}
	got, _ := list(nil)
	want := []string{
		"DELETE /v1/tokens/{id} 401  -",
		"DELETE /v1/tokens/{id} 204 alice -",
		"POST /v1/jobs/{id}/cancel 409 alice " + j.ID,
		"POST /v1/jobs/{id}/cancel 200 alice " + j.ID,
		"POST /v1/jobs 201 alice " + j.ID,
		"PUT /v1/files/{path...} 201 alice -",
		"POST /v1/tokens 201 alice -",
	}
	var lines []string
	for _, e := range got {
		job := e.JobID
		if job == "" {
			job = "-"
		}
		lines = append(lines, fmt.Sprintf("%s %d %s %s", e.Action, e.Outcome, e.User, job))
		if e.RequestID == "" || e.Client == "" || e.Time.IsZero() {
			t.Errorf("entry without request id, client or time: %+v", e)
		}
		if e.User == "alice" && e.TokenID == "" {
			t.Errorf("entry without token id: %+v", e)
		}
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit log, newest first:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if got[1].TokenID == made.ID || got[6].TokenID == "" {
		t.Errorf("token ids: %+v", got)
	}

	// Filters and pages.
	n := func(q url.Values) int {
		t.Helper()
		total := 0
		for pages := 0; ; pages++ {
			items, next := list(q)
			total += len(items)
			if next == "" {
				return total
			}
			q.Set("page_token", next)
		}
	}
	for _, tt := range []struct {
		q    url.Values
		want int
	}{
		{url.Values{"limit": {"2"}}, 7},
		{url.Values{"job": {j.ID}, "limit": {"1"}}, 3},
		{url.Values{"user": {"alice"}}, 6},
		{url.Values{"action": {"POST /v1/jobs/{id}/cancel"}}, 2},
		{url.Values{"since": {time.Now().Add(time.Hour).Format(time.RFC3339)}}, 0},
		{url.Values{"until": {time.Now().Add(time.Hour).Format(time.RFC3339)}, "user": {"alice"}, "limit": {"4"}}, 6},
	} {
		if got := n(tt.q); got != tt.want {
			t.Errorf("%v: %d entries, want %d", tt.q, got, tt.want)
		}
	}
	h.do("GET", "/v1/audit?since=yesterday", admin, nil).want(t, http.StatusUnprocessableEntity)
	h.do("GET", "/v1/audit?page_token=x", admin, nil).want(t, http.StatusUnprocessableEntity)
}

// Requests refused before a principal is known (no token, an unknown one)
// were each a durable audit entry, and no rate limit stops them: an
// anonymous flood of POSTs was a flood of writes, kept for a year. They
// are audited up to a bucket of their own, then left out.
func TestAnonymousRefusalsAuditedWithinABound(t *testing.T) {
	h := newHarness(t, nil)
	admin := h.token("root", time.Time{}, api.ScopeAdmin)
	reader := h.token("alice", time.Time{}, api.ScopeJobsRead)
	start := time.Now()
	for range anonymousAudit.Burst + 30 {
		h.do("POST", "/v1/jobs", "", map[string]any{"template": "hello"}).want(t, http.StatusUnauthorized)
	}
	refill := int(time.Since(start).Seconds()*anonymousAudit.PerSecond) + 1
	// refusals of a known principal are audited whatever the bucket holds,
	// also those decided before the handler (a scope the token lacks)
	h.do("POST", "/v1/jobs", admin, map[string]any{"template": "nosuch"}).want(t, http.StatusUnprocessableEntity)
	h.do("POST", "/v1/jobs", reader, map[string]any{"template": "hello"}).want(t, http.StatusForbidden)
	var page api.Page[api.AuditEntry]
	h.do("GET", "/v1/audit?limit=1000", admin, nil).want(t, http.StatusOK).decode(t, &page)
	anon, known := 0, map[string]int{}
	for _, e := range page.Items {
		if e.User == "" {
			anon++
		} else {
			known[e.User]++
		}
	}
	if anon < anonymousAudit.Burst || anon > anonymousAudit.Burst+refill || known["root"] != 1 || known["alice"] != 1 {
		t.Fatalf("%d anonymous refusals audited (want the bucket's %d, and up to %d refilled), of known users %v (want one each of root and alice)",
			anon, anonymousAudit.Burst, refill, known)
	}
}

// An entry says what it was aimed at: the user disabled, the token
// revoked or made (its id, user and scopes), the file written; a refused
// attempt too. An entry used to name only the route, and no one could
// tell whom an admin disabled (found by the sixth probe).
func TestAuditTargets(t *testing.T) {
	h := newHarness(t, nil)
	admin := h.token("root", time.Time{}, api.ScopeAdmin)
	alice := h.token("alice", time.Time{}, userScopes...)
	var made api.Token
	h.do("POST", "/v1/tokens", admin, map[string]any{"user": "bob", "scopes": []string{api.ScopeJobsRead}}).want(t, http.StatusCreated).decode(t, &made)
	h.do("POST", "/v1/tokens", alice, map[string]any{"scopes": []string{api.ScopeAdmin}}).want(t, http.StatusForbidden)
	h.do("PUT", "/v1/files/data/in.txt", alice, "hello").want(t, http.StatusCreated)
	h.do("DELETE", "/v1/tokens/"+made.ID, admin, nil).want(t, http.StatusNoContent)
	h.do("POST", "/v1/users/alice/disable", admin, map[string]any{}).want(t, http.StatusOK)

	targets := func(q string) []string {
		t.Helper()
		var page api.Page[api.AuditEntry]
		h.do("GET", "/v1/audit?"+q, admin, nil).want(t, http.StatusOK).decode(t, &page)
		var out []string
		for _, e := range page.Items {
			out = append(out, fmt.Sprintf("%s %d %s", e.Action, e.Outcome, e.Target))
		}
		return out
	}
	want := []string{
		"POST /v1/users/{name}/disable 200 /v1/users/alice/disable",
		"DELETE /v1/tokens/{id} 204 /v1/tokens/" + made.ID,
		"PUT /v1/files/{path...} 201 /v1/files/data/in.txt",
		`POST /v1/tokens 403 token of "alice" with scopes "admin"`,
		`POST /v1/tokens 201 token ` + made.ID + ` of "bob" with scopes "jobs:read"`,
	}
	if got := targets(""); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// who disabled alice: by target, not by who asked
	if got := targets("target=users/alice"); len(got) != 1 || got[0] != want[0] {
		t.Fatalf("target=users/alice: %q", got)
	}
	// a long path is cut: refused requests are audited too
	long := strings.Repeat("é", 20000)
	h.do("PUT", "/v1/files/"+long, "nosuchtoken", "x").want(t, http.StatusUnauthorized)
	var page api.Page[api.AuditEntry]
	h.do("GET", "/v1/audit?limit=1", admin, nil).want(t, http.StatusOK).decode(t, &page)
	if tg := page.Items[0].Target; len(tg) > maxAuditTarget || !strings.HasSuffix(tg, "…") || !utf8.ValidString(tg) {
		t.Fatalf("a long path's target: %d bytes, %q...", len(tg), tg[:min(len(tg), 40)])
	}
}
