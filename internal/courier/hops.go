package courier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"smimegate/internal/smtp"
)

// target is one address to try, with the name it was found under: the
// name is what TLSVerify checks the certificate against and what a DSN
// calls the Remote-MTA.
type target struct {
	host string // MX or relay host name (or the IP literal itself)
	addr string // ip:port to dial
}

// hopError is a failure to find anywhere to deliver to; it carries the
// outcome for every recipient of the attempt.
type hopError struct {
	status   Status
	enhanced smtp.EnhancedCode
	text     string
}

func (e *hopError) Error() string { return e.text }

func newResolver(server string) *net.Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	}
}

// targets lists the addresses to try for a route, best first.
func (c *Courier) targets(ctx context.Context, r Route) ([]target, error) {
	if r.NextHop != "mx" {
		host, port, err := net.SplitHostPort(r.NextHop)
		if err != nil || host == "" {
			return nil, &hopError{Deferred, smtp.EnhancedCode{4, 3, 5}, fmt.Sprintf("next hop %q is neither \"mx\" nor host:port", r.NextHop)}
		}
		addrs, err := c.lookupHost(ctx, host)
		if err != nil {
			var he *hopError
			if errors.As(err, &he) && he.status == Failed {
				// A configured relay that does not resolve is our
				// mistake, not the recipient's: defer (as Postfix does
				// for a bad relayhost) so that fixing it loses no mail.
				return nil, &hopError{Deferred, smtp.EnhancedCode{4, 4, 3}, "next hop " + he.text}
			}
			return nil, err
		}
		return c.cap(expand(host, addrs, port)), nil
	}
	return c.mxTargets(ctx, r.Domain)
}

// maxMXHostLookups bounds the MX hosts whose addresses are looked up in
// one attempt. The MX answer is the destination domain's to make and may
// list hundreds of hosts (as many as a DNS message holds), each costing an
// A and an AAAA query that the domain's own name servers can make slow;
// a domain whose first ten MX hosts have no address at all is broken.
// Postfix bounds the same list by smtp_mx_address_limit (our
// Config.MaxMXAddresses), which also ends the lookups here once reached.
const maxMXHostLookups = 10

// mxTargets implements RFC 5321 section 5.1: the MX records in preference
// order (Go's resolver sorts them and shuffles equal preferences, as the
// RFC asks), each resolved to its addresses; no MX records at all means the
// domain itself is the one host (the implicit MX).
func (c *Courier) mxTargets(ctx context.Context, domain string) ([]target, error) {
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" {
		return nil, &hopError{Failed, smtp.EnhancedCode{5, 1, 2}, "no destination domain for MX delivery"}
	}
	port := strconv.Itoa(c.cfg.MXPort)
	// The trailing dot keeps the resolver from trying search domains.
	mxs, err := c.resolver.LookupMX(ctx, domain+".")
	if err != nil {
		if !isNotFound(err) {
			return nil, &hopError{Deferred, smtp.EnhancedCode{4, 4, 3}, fmt.Sprintf("MX lookup for %s failed: %v", domain, dnsReason(err))}
		}
		mxs = nil
	}
	// RFC 7505 section 3: a single MX of "." says the domain takes no mail.
	if len(mxs) == 1 && (mxs[0].Host == "." || mxs[0].Host == "") {
		return nil, &hopError{Failed, smtp.EnhancedCode{5, 1, 10}, fmt.Sprintf("domain %s accepts no mail (null MX)", domain)}
	}
	if len(mxs) == 0 {
		addrs, err := c.lookupHost(ctx, domain)
		if err != nil {
			return nil, err
		}
		return c.cap(expand(domain, addrs, port)), nil
	}
	var out []target
	var lastErr error
	looked := 0
	for _, mx := range mxs {
		if len(out) >= c.cfg.MaxMXAddresses || looked == maxMXHostLookups {
			// Enough addresses to try, or enough lookups spent: the
			// rest of the list would only cost DNS queries.
			break
		}
		host := strings.TrimSuffix(mx.Host, ".")
		if host == "" {
			continue
		}
		looked++
		addrs, err := c.lookupHost(ctx, host)
		if err != nil {
			// One MX host without addresses is no reason to give up on
			// the others.
			lastErr = err
			continue
		}
		out = append(out, expand(host, addrs, port)...)
	}
	if len(out) == 0 {
		var he *hopError
		if errors.As(lastErr, &he) && he.status == Failed {
			// Every MX host named in DNS is missing: Postfix defers this,
			// since it is usually a transient zone mistake.
			return nil, &hopError{Deferred, smtp.EnhancedCode{4, 4, 4}, fmt.Sprintf("no MX host of %s has an address: %s", domain, he.text)}
		}
		if lastErr != nil {
			return nil, lastErr
		}
		return nil, &hopError{Deferred, smtp.EnhancedCode{4, 4, 4}, fmt.Sprintf("no usable MX host for %s", domain)}
	}
	return c.cap(out), nil
}

// lookupHost resolves a host name to its A and AAAA records, leaving IP
// literals alone.
func (c *Courier) lookupHost(ctx context.Context, host string) ([]string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []string{ip.String()}, nil
	}
	name := host
	if !strings.HasSuffix(name, ".") && name != "localhost" {
		name += "."
	}
	ips, err := c.resolver.LookupIPAddr(ctx, name)
	if err != nil {
		if isNotFound(err) {
			return nil, &hopError{Failed, smtp.EnhancedCode{5, 1, 2}, fmt.Sprintf("host %s not found", host)}
		}
		return nil, &hopError{Deferred, smtp.EnhancedCode{4, 4, 3}, fmt.Sprintf("address lookup for %s failed: %v", host, dnsReason(err))}
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.IP.String())
	}
	if len(out) == 0 {
		return nil, &hopError{Failed, smtp.EnhancedCode{5, 1, 2}, fmt.Sprintf("host %s has no address", host)}
	}
	return out, nil
}

func expand(host string, addrs []string, port string) []target {
	out := make([]target, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, target{host: host, addr: net.JoinHostPort(a, port)})
	}
	return out
}

func (c *Courier) cap(t []target) []target {
	if len(t) > c.cfg.MaxMXAddresses {
		return t[:c.cfg.MaxMXAddresses]
	}
	return t
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// dnsReason is the part of a resolver error worth logging: without the
// resolver's own address, which says nothing about the destination.
func dnsReason(err error) string {
	var de *net.DNSError
	if errors.As(err, &de) {
		if de.IsTimeout {
			return "timeout"
		}
		return de.Err
	}
	return err.Error()
}
