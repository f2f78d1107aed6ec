//go:build tools

// Package tools pins the modules that smimegate's packages import, so that
// go.mod stays complete while the packages are written in parallel.
package tools

import (
	_ "github.com/emersion/go-message/textproto"
	_ "github.com/emersion/go-smtp"
	_ "github.com/miekg/dns"
	_ "github.com/pelletier/go-toml/v2"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "golang.org/x/crypto/cryptobyte"
	_ "golang.org/x/crypto/hkdf"
	_ "golang.org/x/net/idna"
	_ "software.sslmate.com/src/go-pkcs12"
)
