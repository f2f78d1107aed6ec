// Package smtp is what smimegate's SMTP receiver (internal/smtpd) and its
// SMTP client (internal/courier) share, so that each rule of the protocol
// is written once, next to the section of the RFC that states it:
//
//   - Error, the one shape of an SMTP reply with its enhanced status code
//     (RFC 5321 section 4.2, RFC 3463, RFC 2034) that every package returns
//     and that the receiver writes as it is;
//   - CanonicalDomain, the one form in which domains are compared, by the
//     configuration, the certificate store, the policy and the receiver
//     alike (RFC 5890, RFC 5891);
//   - the other pieces of the wire format both sides need: addresses, xtext
//     (RFC 3461 section 4), the dot-stuffed DATA stream (RFC 5321 section
//     4.5.2) and EHLO keywords (RFC 5321 section 4.1.1.1).
//
// It imports no other smimegate package.
package smtp
