// Package auth makes and checks hpcgate's tokens.
//
// A token is "hpcg_" and 256 random bits, base64url. Only its SHA-256 is
// stored; a presented token is hashed, looked up by hash, and compared in
// constant time. Scopes say what a token may do; admin may do everything a
// user may, for any user. A job token (scope "job") acts only for its job.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/store"
)

// ErrUnauthenticated: no token, an unknown one, or an expired one.
var ErrUnauthenticated = errors.New("missing, unknown or expired token")

// ErrUserDisabled: the token's user was disabled by an admin.
var ErrUserDisabled = errors.New("the user is disabled")

// Prefix starts every token, so that secret scanners can find them.
const Prefix = "hpcg_"

// UserScopes are the scopes a person's token may carry.
var UserScopes = []string{api.ScopeJobsRead, api.ScopeJobsWrite, api.ScopeFilesRead, api.ScopeFilesWrite, api.ScopeTasks, api.ScopeAdmin}

// Principal is who a request acts for.
type Principal struct {
	User    string
	Scopes  []string
	TokenID string
	// TokenName is the name its maker gave the token ("" for none); the
	// server names its web sessions' tokens so.
	TokenName string
	JobID     string    // set for a job token
	Expires   time.Time // when the token stops working; zero: never
	// SessionKey is a web session's (store.Token.SessionKey).
	SessionKey string
}

// Covers reports whether a token with scopes and expiry expires (zero:
// never) is no broader and no longer-lived than p's own: every scope of it
// is one of p's, and it ends no later than p's token. Admin tokens are
// held to the expiry rule too; their scopes cover every user scope.
func (p *Principal) Covers(scopes []string, expires time.Time) bool {
	for _, s := range scopes {
		if !slices.Contains(p.Scopes, s) && !(p.IsAdmin() && s != api.ScopeJob) {
			return false
		}
	}
	return p.Expires.IsZero() || (!expires.IsZero() && !expires.After(p.Expires))
}

// IsAdmin reports whether the principal has the admin scope.
func (p *Principal) IsAdmin() bool { return slices.Contains(p.Scopes, api.ScopeAdmin) }

// IsJob reports whether the principal is a job token.
func (p *Principal) IsJob() bool { return p.JobID != "" }

// Has reports whether the principal may act with scope. Admin implies every
// user scope.
func (p *Principal) Has(scope string) bool {
	return slices.Contains(p.Scopes, scope) || (scope != api.ScopeJob && p.IsAdmin())
}

// NewSecret returns a new token secret and its hash.
func NewSecret() (secret, hash string) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	secret = Prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, Hash(secret)
}

// Hash returns the hex SHA-256 of a secret.
func Hash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// NewID returns a token id: public, for listing and revoking.
func NewID() string {
	var b [9]byte
	rand.Read(b[:])
	return "tok_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// CheckScopes returns an error naming any scope that is not a user scope.
func CheckScopes(scopes []string) error {
	if len(scopes) == 0 {
		return errors.New("at least one scope is needed")
	}
	for _, s := range scopes {
		if !slices.Contains(UserScopes, s) {
			return fmt.Errorf("unknown scope %q (known: %s)", s, strings.Join(UserScopes, ", "))
		}
	}
	return nil
}

// Authenticator resolves secrets to principals, with a short cache so that
// a busy client does not cost a database read per request.
type Authenticator struct {
	store store.Store
	ttl   time.Duration

	mu    sync.Mutex
	cache map[string]cached
	users map[string]cachedUser // user → whether disabled
}

type cachedUser struct {
	disabled bool
	expires  time.Time
}

type cached struct {
	tok     store.Token
	expires time.Time
}

// NewAuthenticator returns an Authenticator over s. A revoked token may be
// honoured for up to ttl by another gateway replica (this one forgets it at
// once); ttl 0 disables the cache.
func NewAuthenticator(s store.Store, ttl time.Duration) *Authenticator {
	return &Authenticator{store: s, ttl: ttl, cache: map[string]cached{}, users: map[string]cachedUser{}}
}

// Authenticate returns the principal of secret, or ErrUnauthenticated.
func (a *Authenticator) Authenticate(ctx context.Context, secret string) (*Principal, error) {
	if !strings.HasPrefix(secret, Prefix) || len(secret) > 128 {
		return nil, ErrUnauthenticated
	}
	hash := Hash(secret)
	now := time.Now()
	a.mu.Lock()
	c, ok := a.cache[hash]
	a.mu.Unlock()
	tok := c.tok
	if !ok || now.After(c.expires) {
		var err error
		tok, err = a.store.TokenByHash(ctx, hash)
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrUnauthenticated
		}
		if err != nil {
			return nil, fmt.Errorf("look up token: %w", err)
		}
		if a.ttl > 0 {
			a.mu.Lock()
			if len(a.cache) > 10000 {
				clear(a.cache)
			}
			a.cache[hash] = cached{tok: tok, expires: now.Add(a.ttl)}
			a.mu.Unlock()
		}
	}
	if subtle.ConstantTimeCompare([]byte(tok.Hash), []byte(hash)) != 1 {
		return nil, ErrUnauthenticated
	}
	if !tok.ExpiresAt.IsZero() && now.After(tok.ExpiresAt) {
		return nil, ErrUnauthenticated
	}
	disabled, err := a.userDisabled(ctx, tok.User, now)
	if err != nil {
		return nil, err
	}
	if disabled {
		return nil, ErrUserDisabled
	}
	return &Principal{User: tok.User, Scopes: tok.Scopes, TokenID: tok.ID, TokenName: tok.Name, JobID: tok.JobID, Expires: tok.ExpiresAt, SessionKey: tok.SessionKey}, nil
}

// userDisabled reports whether user is disabled, from the cache if it is
// younger than the ttl.
func (a *Authenticator) userDisabled(ctx context.Context, user string, now time.Time) (bool, error) {
	a.mu.Lock()
	c, ok := a.users[user]
	a.mu.Unlock()
	if ok && !now.After(c.expires) {
		return c.disabled, nil
	}
	u, err := a.store.User(ctx, user)
	if err != nil {
		return false, fmt.Errorf("look up user: %w", err)
	}
	if a.ttl > 0 {
		a.mu.Lock()
		if len(a.users) > 10000 {
			clear(a.users)
		}
		a.users[user] = cachedUser{disabled: u.Disabled, expires: now.Add(a.ttl)}
		a.mu.Unlock()
	}
	return u.Disabled, nil
}

// ForgetUser drops what the cache holds of user (after a disable or an
// enable), so that this process sees the change at once.
func (a *Authenticator) ForgetUser(user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.users, user)
}

// Forget drops a token from the cache (after it was revoked).
func (a *Authenticator) Forget(tokenID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for h, c := range a.cache {
		if c.tok.ID == tokenID {
			delete(a.cache, h)
		}
	}
}
