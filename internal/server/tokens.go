package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/auth"
	"github.com/hpcgate/hpcgate/internal/ctlchar"
	"github.com/hpcgate/hpcgate/internal/store"
)

// UserNameRE is what a user name must match: it becomes part of object keys.
var UserNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$`)

func apiToken(t store.Token) api.Token {
	out := api.Token{ID: t.ID, User: t.User, Name: t.Name, Scopes: t.Scopes, JobID: t.JobID, CreatedAt: t.CreatedAt.UTC()}
	if !t.ExpiresAt.IsZero() {
		out.ExpiresAt = timePtr(t.ExpiresAt)
	}
	return out
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	var req api.TokenRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	if req.User == "" {
		req.User = p.User
	}
	// the audit entry says what was asked for, refused or not
	setTarget(r, fmt.Sprintf("token of %.64q with scopes %.200q", req.User, strings.Join(req.Scopes, ",")))
	var fields []api.FieldError
	bad := func(f, format string, args ...any) {
		fields = append(fields, api.FieldError{Field: f, Message: fmt.Sprintf(format, args...)})
	}
	if !UserNameRE.MatchString(req.User) {
		bad("user", "must match %s", UserNameRE)
	}
	if err := auth.CheckScopes(req.Scopes); err != nil {
		bad("scopes", "%v", err)
	}
	now := time.Now().UTC()
	var expires time.Time
	switch {
	case req.ExpiresInS < 0 || req.ExpiresInS > 10*365*24*3600:
		bad("expires_in_s", "must be from 0 (as long as this token) to ten years")
	case req.ExpiresInS > 0:
		expires = now.Add(time.Duration(req.ExpiresInS) * time.Second)
	default:
		// No lifetime asked for: that of the token making it.
		expires = p.Expires
	}
	if req.ExpiresInS > 0 && !p.Expires.IsZero() && expires.After(p.Expires) {
		bad("expires_in_s", "must be at most %d: a token may not outlive the token that makes it", int64(p.Expires.Sub(now)/time.Second))
	}
	if len(req.Name) > 128 {
		bad("name", "at most 128 characters")
	}
	if ctlchar.In(req.Name) {
		bad("name", ctlchar.Refusal)
	}
	if strings.HasPrefix(req.Name, sessionName) {
		bad("name", "names that begin %q are the web sessions'", sessionName)
	}
	if len(fields) > 0 {
		return &httpError{status: http.StatusUnprocessableEntity, code: api.CodeValidation, detail: "invalid token request", fields: fields}
	}
	if !p.IsAdmin() && req.User != p.User {
		return errorf(http.StatusForbidden, api.CodeForbidden, "only an admin may create tokens for another user")
	}
	for _, sc := range req.Scopes {
		if !p.Has(sc) {
			return errorf(http.StatusForbidden, api.CodeForbidden, "a token may not have a scope its maker lacks (%s)", sc)
		}
	}
	s.tokensMu.Lock()
	defer s.tokensMu.Unlock()
	if err := s.roomForToken(r.Context(), req.User, now); err != nil {
		return err
	}
	secret, hash := auth.NewSecret()
	t := store.Token{ID: auth.NewID(), Hash: hash, User: req.User, Name: req.Name, Scopes: req.Scopes, CreatedAt: now, ExpiresAt: expires}
	if err := s.store.CreateToken(r.Context(), t); err != nil {
		return err
	}
	setTarget(r, fmt.Sprintf("token %s of %q with scopes %q", t.ID, t.User, strings.Join(t.Scopes, ",")))
	out := apiToken(t)
	out.Token = secret
	return writeJSON(w, http.StatusCreated, out)
}

// maxTokens is the most tokens that have not expired (web sessions
// included) one user may hold: each is a row, and an entry of the
// authenticator's cache.
const maxTokens = 1000

// roomForToken refuses another token for user, who holds maxTokens.
func (s *Server) roomForToken(ctx context.Context, user string, now time.Time) error {
	toks, err := s.store.ListTokens(ctx, user)
	if err != nil {
		return err
	}
	live := 0
	for _, t := range toks {
		if t.ExpiresAt.IsZero() || t.ExpiresAt.After(now) {
			live++
		}
	}
	if live >= maxTokens {
		return errorf(http.StatusConflict, api.CodeConflict, "%s holds %d tokens that have not expired, the most one user may: revoke those no longer used (hpcgate token list; hpcgate token revoke ID)", user, live)
	}
	return nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	user := p.User
	if u := r.URL.Query().Get("user"); u != "" {
		if !p.IsAdmin() && u != p.User {
			return errorf(http.StatusForbidden, api.CodeForbidden, "only an admin may list another user's tokens")
		}
		user = u
		if u == "*" {
			user = ""
		}
	}
	toks, err := s.store.ListTokens(r.Context(), user)
	if err != nil {
		return err
	}
	page := api.Page[api.Token]{Items: []api.Token{}}
	for _, t := range toks {
		page.Items = append(page.Items, apiToken(t))
	}
	return writeJSON(w, http.StatusOK, page)
}

// IsAdminToken is whether t is a person's token (not a job's or a web
// session's) with the admin scope that has not expired at now.
func IsAdminToken(t store.Token, now time.Time) bool {
	return slices.Contains(t.Scopes, api.ScopeAdmin) && t.JobID == "" && !strings.HasPrefix(t.Name, sessionName) &&
		(t.ExpiresAt.IsZero() || t.ExpiresAt.After(now))
}

// adminsLeft is whether an admin token of an enabled user is left but
// those of except. The caller holds tokensMu.
func (s *Server) adminsLeft(ctx context.Context, except func(store.Token) bool) (bool, error) {
	return AdminsLeft(ctx, s.store, except)
}

// AdminsLeft is whether st holds an admin token of an enabled user but
// those of except: if not, no one can administer the gateway.
func AdminsLeft(ctx context.Context, st store.Store, except func(store.Token) bool) (bool, error) {
	toks, err := st.ListTokens(ctx, "")
	if err != nil {
		return false, err
	}
	now := time.Now()
	for _, t := range toks {
		if !IsAdminToken(t, now) || except(t) {
			continue
		}
		u, err := st.User(ctx, t.User)
		if err != nil {
			return false, err
		}
		if !u.Disabled {
			return true, nil
		}
	}
	return false, nil
}

// deleteToken revokes a token. A token may revoke only tokens of its own
// user that are no broader and no longer-lived than itself (itself
// included); an admin may revoke any.
func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	id := r.PathValue("id")
	user := p.User
	if p.IsAdmin() {
		user = ""
	}
	toks, err := s.store.ListTokens(r.Context(), user)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(toks, func(t store.Token) bool { return t.ID == id })
	if i < 0 {
		return fmt.Errorf("token %s: %w", id, store.ErrNotFound)
	}
	if !p.IsAdmin() && !p.Covers(toks[i].Scopes, toks[i].ExpiresAt) {
		return errorf(http.StatusForbidden, api.CodeForbidden, "a token may revoke only tokens whose scopes are among its own and that expire no later than it does")
	}
	if IsAdminToken(toks[i], time.Now()) {
		// no one could administer the gateway, nor make an admin token
		s.tokensMu.Lock()
		defer s.tokensMu.Unlock()
		left, err := s.adminsLeft(r.Context(), func(t store.Token) bool { return t.ID == id })
		if err != nil {
			return err
		}
		if !left {
			return errorf(http.StatusConflict, api.CodeConflict, "this is the last admin token of an enabled user: make another (hpcgate token create --scopes admin) before revoking it")
		}
	}
	if err := s.store.DeleteToken(r.Context(), id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.auth.Forget(id)
	if err := s.endSessionsOf(r, toks, toks[i].User, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
