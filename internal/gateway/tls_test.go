package gateway

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// The self-signed certificate names where environments' jobs reach the
// gateway (gateway_host); one made before that does not is made anew.
func TestSelfSignedNamesJobHosts(t *testing.T) {
	dir := t.TempDir()
	cert, _, created, err := ensureSelfSigned(dir, "127.0.0.1")
	if err != nil || !created {
		t.Fatalf("first: created %v, %v", created, err)
	}
	if _, _, created, _ := ensureSelfSigned(dir, "127.0.0.1", "0.0.0.0", ""); created {
		t.Fatal("a certificate naming every host was made anew")
	}
	_, _, created, err = ensureSelfSigned(dir, "127.0.0.1", "10.77.0.1", "head.example.org")
	if err != nil || !created {
		t.Fatalf("with new hosts: created %v, %v", created, err)
	}
	b, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"127.0.0.1", "localhost", "10.77.0.1", "head.example.org"} {
		if err := c.VerifyHostname(h); err != nil {
			t.Errorf("the certificate does not name %s: %v", h, err)
		}
	}
	if _, _, created, _ := ensureSelfSigned(dir, "10.77.0.1"); created {
		t.Fatal("made anew although it names the host")
	}
	if _, err := os.Stat(filepath.Join(dir, "key.pem")); err != nil {
		t.Fatal(err)
	}
}
