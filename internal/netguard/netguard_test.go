package netguard

import (
	"errors"
	"net/netip"
	"testing"
)

func TestControl(t *testing.T) {
	var seen netip.Addr
	refuse := errors.New("refused")
	ctl := Control(func(a netip.Addr) error {
		seen = a
		if a.IsLoopback() {
			return refuse
		}
		return nil
	})
	if err := ctl("tcp4", "[::ffff:127.0.0.1]:443", nil); !errors.Is(err, refuse) || seen != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("a mapped loopback address: %v (seen %v)", err, seen)
	}
	if err := ctl("tcp", "192.0.2.1:443", nil); err != nil {
		t.Errorf("another address: %v", err)
	}
	if err := ctl("tcp", "no-port", nil); err == nil {
		t.Error("an address without a port passed")
	}
}
