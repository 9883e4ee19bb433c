// Package testenv finds the real components the test command started
// (scripts/test.sh), for tests in any package; a test whose component is
// not there skips, saying how to start it.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// S3 returns the objects URL of the S3 server of HPCGATE_TEST_S3 (as
// scripts/setup-s3.sh prints it, s3://BUCKET?endpoint=...) with a fresh
// prefix of its own as its path, and the credentials to use: the
// environment's, or the test server's. It skips t if HPCGATE_TEST_S3 is
// not set.
func S3(t testing.TB) (u *url.URL, key, secret string) {
	t.Helper()
	raw := os.Getenv("HPCGATE_TEST_S3")
	if raw == "" {
		t.Skip("HPCGATE_TEST_S3 not set: run scripts/setup-s3.sh and set it to the URL it prints (scripts/test.sh does both)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("HPCGATE_TEST_S3: %v", err)
	}
	var b [6]byte
	rand.Read(b[:])
	u.Path += "/test-" + hex.EncodeToString(b[:])
	key, secret = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if key == "" {
		key, secret = "hpcgate", "hpcgate-secret"
	}
	return u, key, secret
}

// Postgres returns the URL of the PostgreSQL database of
// HPCGATE_TEST_POSTGRES (as scripts/setup-postgres.sh prints it). It
// skips t if that is not set.
func Postgres(t testing.TB) string {
	t.Helper()
	u := os.Getenv("HPCGATE_TEST_POSTGRES")
	if u == "" {
		t.Skip("HPCGATE_TEST_POSTGRES not set: run scripts/setup-postgres.sh and set it to the URL it prints (scripts/test.sh does both)")
	}
	return u
}

// PostgresSchema returns the URL of the database of Postgres with a new,
// empty schema as its search_path; the schema is dropped when the test
// ends.
func PostgresSchema(t testing.TB) string {
	t.Helper()
	base := Postgres(t)
	b := make([]byte, 8)
	rand.Read(b)
	schema := "s_" + hex.EncodeToString(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Error(err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", "16") // enough for the concurrent tests to race
	q.Set("search_path", schema)  // an unknown setting: pgx sends it as a run-time parameter
	u.RawQuery = q.Encode()
	return u.String()
}
