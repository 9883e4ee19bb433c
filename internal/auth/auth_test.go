package auth

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/store/sqlitestore"
)

func TestSecrets(t *testing.T) {
	a, ha := NewSecret()
	b, _ := NewSecret()
	if a == b || !strings.HasPrefix(a, Prefix) || len(a) != len(Prefix)+43 {
		t.Fatalf("secrets %q %q", a, b)
	}
	if Hash(a) != ha || len(ha) != 64 || strings.Contains(ha, a) {
		t.Fatalf("hash %q", ha)
	}
}

func TestAuthenticate(t *testing.T) {
	ctx := context.Background()
	s, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := NewAuthenticator(s, time.Minute)
	secret, hash := NewSecret()
	s.CreateToken(ctx, store.Token{ID: "t1", Hash: hash, User: "alice", Scopes: []string{"jobs:read"}, CreatedAt: time.Now()})
	old, oldHash := NewSecret()
	s.CreateToken(ctx, store.Token{ID: "t2", Hash: oldHash, User: "alice", Scopes: []string{"jobs:read"}, CreatedAt: time.Now(), ExpiresAt: time.Now().Add(-time.Second)})

	p, err := a.Authenticate(ctx, secret)
	if err != nil || p.User != "alice" || !p.Has("jobs:read") || p.Has("jobs:write") || p.IsAdmin() {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	for _, bad := range []string{"", "hpcg_wrong", "Bearer " + secret, secret + "x", old} {
		if _, err := a.Authenticate(ctx, bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Authenticate(%q) = %v, want ErrUnauthenticated", bad, err)
		}
	}
	s.DeleteToken(ctx, "t1")
	a.Forget("t1")
	if _, err := a.Authenticate(ctx, secret); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked token still works: %v", err)
	}
}

func TestAdminHasUserScopesButNotJob(t *testing.T) {
	p := &Principal{Scopes: []string{"admin"}}
	if !p.Has("files:write") || p.Has("job") {
		t.Fatal("admin scopes wrong")
	}
	if err := CheckScopes([]string{"jobs:read", "job"}); err == nil {
		t.Fatal("a user token may not carry the job scope")
	}
}
