package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"smimegate/internal/certstore"
)

// writeCertTable writes `cert list`'s table: the most urgent certificates
// first (unusable ones, then those that expire soonest), those within
// certstore.ExpiresSoonWindow marked with "!" in DAYS; then, for each
// certificate that needs a word, why it is unusable and what is known of
// its revocation.
func writeCertTable(w io.Writer, certs []*certstore.Cert, now time.Time) error {
	certs = slices.Clone(certs)
	slices.SortStableFunc(certs, func(a, b *certstore.Cert) int {
		return cmp.Or(cmp.Compare(urgency(a, now), urgency(b, now)), a.X509.NotAfter.Compare(b.X509.NotAfter),
			cmp.Compare(strings.Join(a.Domains, ","), strings.Join(b.Domains, ",")))
	})
	notes := ownRotationNotes(certs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAINS\tKIND\tKEY\tSUBJECT\tSHA-256\tNOT AFTER\tDAYS\tSOURCE\tREVOCATION\tSTATUS")
	for _, c := range certs {
		kind := "partner"
		switch {
		case c.Own:
			kind = "own"
			if n := notes[c.Fingerprint]; n != "" {
				kind += " (" + n + ")"
			}
		case c.Harvested():
			// Learnt from a verified domain signature (certs.harvest).
			kind = "harvested"
		}
		domains := strings.Join(c.Domains, ",")
		if domains == "" {
			domains = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", domains, kind, c.KeyType(), c.X509.Subject.String(), c.Fingerprint,
			c.X509.NotAfter.UTC().Format(time.DateOnly), daysLeft(c, now), c.Source, revocationCell(c.Revocation), c.Status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var details []string
	for _, c := range certs {
		name := fmt.Sprintf("%s (sha256 %s)", strings.Join(c.Domains, ","), c.Fingerprint[:16])
		if !c.Usable() || c.Status == certstore.ExpiresSoon {
			details = append(details, fmt.Sprintf("  %s: %s: %s", name, c.Status, c.Reason))
		}
		if c.Revocation.State != certstore.RevNotChecked && c.Status != certstore.Revoked && c.Status != certstore.RevocationUnknown {
			details = append(details, fmt.Sprintf("  %s: revocation: %s", name, c.Revocation.Summary()))
		}
	}
	if len(details) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(details, "\n"))
	}
	return nil
}

// urgency orders `cert list`: 0 for certificates that are not usable (an
// own one without its key, or revoked, too), 1 for those within the
// expiry window, 2 for the rest.
func urgency(c *certstore.Cert, now time.Time) int {
	switch {
	case !c.Usable(), c.Own && c.Key == nil:
		return 0
	case c.X509.NotAfter.Sub(now) < certstore.ExpiresSoonWindow:
		return 1
	}
	return 2
}

// daysLeft is the DAYS cell: the days until notAfter, "!" within the
// expiry window.
func daysLeft(c *certstore.Cert, now time.Time) string {
	left := c.X509.NotAfter.Sub(now)
	days := int(left.Hours() / 24)
	if left < 0 {
		return "! expired"
	}
	if left < certstore.ExpiresSoonWindow {
		return fmt.Sprintf("! %d", days)
	}
	return fmt.Sprint(days)
}

// revocationCell says the revocation status in a few words.
func revocationCell(i certstore.RevocationInfo) string {
	src := func() string {
		kind, _, _ := strings.Cut(i.Source, " ")
		return kind
	}
	switch i.State {
	case certstore.RevNotChecked:
		return "-"
	case certstore.RevGood:
		return fmt.Sprintf("good until %s (%s)", i.Until.UTC().Format("2006-01-02 15:04"), src())
	case certstore.RevRevoked:
		return fmt.Sprintf("revoked (%s)", src())
	case certstore.RevNoSource:
		return "no source"
	}
	return "unknown since " + i.Since.UTC().Format("2006-01-02 15:04")
}

// ownRotationNotes says, for a domain with several own certificates that
// have their key (a rotation, see README "Rotating our domain key"),
// which one partners should now be given: the usable one issued last;
// the others still open mail encrypted to them.
func ownRotationNotes(certs []*certstore.Cert) map[string]string {
	byDomain := map[string][]*certstore.Cert{}
	for _, c := range certs {
		if c.Own && c.Key != nil {
			for _, d := range c.Domains {
				byDomain[d] = append(byDomain[d], c)
			}
		}
	}
	notes := map[string]string{}
	for _, cs := range byDomain {
		if len(cs) < 2 {
			continue
		}
		var current *certstore.Cert
		for _, c := range cs {
			if c.Usable() && (current == nil || c.X509.NotBefore.After(current.X509.NotBefore)) {
				current = c
			}
		}
		for _, c := range cs {
			switch {
			case c == current:
				notes[c.Fingerprint] = "current: give this one to partners"
			case notes[c.Fingerprint] == "":
				notes[c.Fingerprint] = "previous: still decrypts"
			}
		}
	}
	return notes
}
