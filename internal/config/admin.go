package config

import (
	"net"
	"net/netip"
	"strings"
)

// LoopbackListen tells whether a host:port listens on loopback only:
// "localhost" or a loopback address. An empty host (all addresses) or any
// other name is not: a name can resolve to anything.
func LoopbackListen(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
