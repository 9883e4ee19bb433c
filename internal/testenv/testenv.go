// Package testenv finds the real components the test command started
// (scripts/test.sh), for tests in any package; a test whose component is
// not there skips, saying how to start it.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
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
