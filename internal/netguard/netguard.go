// Package netguard checks the address a connection is about to be made
// to, once its name is resolved, so that no name leads where its address
// would be refused (webhooks, inputs by URL).
package netguard

import (
	"net"
	"net/netip"
	"syscall"
)

// Control returns a net.Dialer Control function that refuses a
// connection to an address check refuses (given unmapped: ::ffff:a.b.c.d
// is a.b.c.d).
func Control(check func(netip.Addr) error) func(network, address string, c syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			return err
		}
		return check(a.Unmap())
	}
}
