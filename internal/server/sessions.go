package server

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/auth"
	"github.com/hpcgate/hpcgate/internal/store"
)

// Web sessions. The web interface signs in with a token: POST
// /v1/sessions, sent with that token as a bearer, makes a token of its own
// for the browser (the same user, at most the same scopes, ending with
// the token it came from and within sessionLife) and sets it as an
// HttpOnly, Secure, SameSite=Strict cookie; the page never holds a secret.
// DELETE /v1/sessions/current revokes it, and so does revoking the token
// it came from. A session is a token, so it is listed and revoked as one,
// and replicas share it. It may not make tokens, secrets or sessions,
// as a cookie or as a bearer (their answers would hand a stolen cookie
// something that outlives signing out).
//
// Cross-site request forgery: a request authenticated by the cookie that
// may change something must carry api.CSRFHeader, which a form of
// another site cannot send and a script of another origin can send only
// with a CORS consent the gateway never gives; and its Origin, when the
// browser sends one, must be the gateway's. SameSite=Strict keeps the
// cookie off cross-site requests in the first place.
//
// A session's cookie alone changes nothing: cookies are not kept apart by
// port, so a browser sends the gateway's to any other server on its host
// (another user's notebook on a login node). The header must hold the
// session's key, which POST /v1/sessions answers once and the page keeps
// in its origin's storage, which is kept apart by port. What a stolen
// cookie can still do is read (the page's event stream and downloads
// cannot send a header): serve the gateway on a host name of its own.

const (
	// sessionCookie: the __Host- prefix makes browsers refuse it unless it
	// is Secure, for this host only, on every path.
	sessionCookie = "__Host-hpcgate-session"
	// sessionLife bounds a session, whatever the token it came from.
	sessionLife = 12 * time.Hour
	// sessionName begins the names of sessions among a user's tokens.
	sessionName = "web session"
)

// sessionOf is the name of a session made from token id: revoking that
// token revokes its sessions too (endSessionsOf).
func sessionOf(id string) string { return sessionName + " of token " + id }

// endSessionsOf revokes the sessions of user's token id (just revoked)
// among toks, the tokens already listed.
func (s *Server) endSessionsOf(r *http.Request, toks []store.Token, user, id string) error {
	for _, t := range toks {
		if t.User == user && t.Name == sessionOf(id) {
			if err := s.store.DeleteToken(r.Context(), t.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			s.auth.Forget(t.ID)
		}
	}
	return nil
}

// sessionSecret returns the session cookie's secret, or "".
func sessionSecret(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	return c.Value
}

// checkCookieRequest refuses a request authenticated by the session cookie
// that could be forged by another site: one that may change something
// without api.CSRFHeader, or from another origin.
func checkCookieRequest(r *http.Request, rt route) error {
	switch rt.pattern {
	case "POST /v1/sessions":
		return errorf(http.StatusUnauthorized, api.CodeUnauthenticated, "sign in with a token: Authorization: Bearer TOKEN")
	}
	if o := r.Header.Get("Origin"); o != "" {
		// https, or plain http where this connection is (a loopback
		// gateway with insecure_http, or behind a proxy ending TLS)
		u, err := url.Parse(o)
		if err != nil || !(u.Scheme == "https" || u.Scheme == "http" && r.TLS == nil) || !strings.EqualFold(u.Host, r.Host) {
			return errorf(http.StatusForbidden, api.CodeForbidden, "a request from another site may not use this session")
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Header.Get(api.CSRFHeader) == "" {
		return errorf(http.StatusForbidden, api.CodeForbidden, "a request that changes something needs the header %s with a session", api.CSRFHeader)
	}
	return nil
}

// checkSession refuses a web session's token, whether it came as the
// cookie or as a bearer, what would outlive the session: a token, a
// webhook secret, or another session. A stolen cookie must not become
// access that survives signing out, and sessions end with the token that
// made them because sessions make none.
//
// A session's request that may change something must hold the session's
// key in api.CSRFHeader, whether its secret came as the cookie or as a
// bearer.
func checkSession(r *http.Request, p *auth.Principal, rt route) error {
	if !strings.HasPrefix(p.TokenName, sessionName) {
		return nil
	}
	switch rt.pattern {
	case "POST /v1/tokens", "POST /v1/webhook-secret", "POST /v1/sessions":
		return errorf(http.StatusForbidden, api.CodeForbidden, "a web session may not make tokens, secrets or sessions: use a token (Authorization: Bearer TOKEN)")
	}
	// Reading needs no key; nor does signing out, which a page that lost
	// its key must still do (a thief of the cookie may only end it).
	if r.Method == http.MethodGet || r.Method == http.MethodHead || rt.pattern == "DELETE /v1/sessions/current" {
		return nil
	}
	key := r.Header.Get(api.CSRFHeader)
	if p.SessionKey == "" || subtle.ConstantTimeCompare([]byte(auth.Hash(key)), []byte(p.SessionKey)) != 1 {
		return errorf(http.StatusUnauthorized, api.CodeUnauthenticated, "this web session's key is missing from %s or wrong: sign in again", api.CSRFHeader)
	}
	return nil
}

func (s *Server) createSession(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	now := time.Now().UTC()
	expires := now.Add(sessionLife)
	if !p.Expires.IsZero() && p.Expires.Before(expires) {
		expires = p.Expires
	}
	s.tokensMu.Lock()
	defer s.tokensMu.Unlock()
	if err := s.roomForToken(r.Context(), p.User, now); err != nil {
		return err
	}
	secret, hash := auth.NewSecret()
	key, keyHash := auth.NewSecret()
	t := store.Token{ID: auth.NewID(), Hash: hash, User: p.User, Name: sessionOf(p.TokenID), Scopes: p.Scopes, CreatedAt: now, ExpiresAt: expires, SessionKey: keyHash}
	if err := s.store.CreateToken(r.Context(), t); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: secret, Path: "/", Expires: expires,
		MaxAge: int(time.Until(expires) / time.Second), HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	return writeJSON(w, http.StatusCreated, api.Session{User: t.User, Scopes: t.Scopes, TokenID: t.ID, ExpiresAt: expires, Key: key})
}

// deleteSession ends the session the request came with (its cookie or,
// for a client that kept it, its secret as a bearer) on the server, and
// clears the cookie.
func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	toks, err := s.store.ListTokens(r.Context(), p.User)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(toks, func(t store.Token) bool { return t.ID == p.TokenID })
	if i < 0 || !strings.HasPrefix(toks[i].Name, sessionName) {
		return errorf(http.StatusBadRequest, api.CodeBadRequest, "this request's token is not a web session's; revoke tokens with DELETE /v1/tokens/{id}")
	}
	if err := s.store.DeleteToken(r.Context(), p.TokenID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.auth.Forget(p.TokenID)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
	return nil
}
