package postfixtest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The recipes in docs/postfix.md are read from the document itself, so that
// the tests run what an operator copies. Two changes make a recipe fit a
// throwaway instance: every fixed port becomes a free loopback port, and
// chroot is off (a chroot jail needs files copied into the queue directory).

// Recipe is one recipe of docs/postfix.md, as written there.
type Recipe struct {
	MainCF   map[string]string // the main.cf block
	MasterCF string            // the master.cf block ("" if the recipe has none)
	TOML     string            // the smimegate.toml block
	// Transport is the /etc/postfix/transport block (relayhost recipe).
	Transport string
}

// The section titles in docs/postfix.md and the ports its text uses.
const (
	ContentFilterSection = "1. After-queue content filter"
	RelayhostSection     = "2. relayhost"
	recipeGatewayAddr    = "[127.0.0.1]:2525"
	recipeReinjectAddr   = "127.0.0.1:10026"
)

// ReadRecipe reads the recipe under the heading that starts with section
// from the Markdown file doc (docs/postfix.md).
func ReadRecipe(doc, section string) (*Recipe, error) {
	b, err := os.ReadFile(doc)
	if err != nil {
		return nil, err
	}
	text := string(b)
	i := strings.Index(text, "\n## "+section)
	if i < 0 {
		return nil, fmt.Errorf("%s has no section %q", doc, section)
	}
	sec := text[i+1:]
	if j := strings.Index(sec[3:], "\n## "); j >= 0 {
		sec = sec[:j+3]
	}
	r := &Recipe{}
	mainText, err := codeBlock(sec, "### main.cf")
	if err != nil {
		return nil, fmt.Errorf("%s, %s: %w", doc, section, err)
	}
	if r.MainCF, err = parseMainCF(mainText); err != nil {
		return nil, fmt.Errorf("%s, %s: %w", doc, section, err)
	}
	if r.TOML, err = codeBlock(sec, "### smimegate.toml"); err != nil {
		return nil, fmt.Errorf("%s, %s: %w", doc, section, err)
	}
	// These two are in one recipe each.
	r.MasterCF, _ = codeBlock(sec, "### master.cf")
	r.Transport, _ = codeBlock(sec, "### /etc/postfix/transport")
	return r, nil
}

// ContentFilter returns Options that run the content-filter recipe with the
// gateway at gatewayPort. The re-injection smtpd gets a free port, which
// Instance.Ports["reinject"] tells once the instance runs: smimegate's
// relay.outbound and relay.inbound go there. Where the gateway's port is
// known only later, pass any port and change content_filter with
// Instance.Set.
func (r *Recipe) ContentFilter(gatewayPort int) (Options, error) {
	if !strings.Contains(r.MainCF["content_filter"], recipeGatewayAddr) || !strings.Contains(r.MasterCF, recipeReinjectAddr+" inet") {
		return Options{}, fmt.Errorf("the content-filter recipe no longer uses %s and %s; update postfixtest", recipeGatewayAddr, recipeReinjectAddr)
	}
	main := cloneMap(r.MainCF)
	main["content_filter"] = strings.ReplaceAll(main["content_filter"], recipeGatewayAddr, "[127.0.0.1]:"+strconv.Itoa(gatewayPort))
	master := strings.ReplaceAll(chrootOff(r.MasterCF), recipeReinjectAddr, `127.0.0.1:{{port "reinject"}}`)
	return Options{MainCF: main, MasterCF: master}, nil
}

// Relayhost returns Options that run the relayhost recipe with the gateway
// at gatewayPort: relayhost and the transport map (as an inline: table, so
// that no postmap is needed) both point there.
func (r *Recipe) Relayhost(gatewayPort int) (Options, error) {
	if r.MainCF["relayhost"] != recipeGatewayAddr || r.Transport == "" {
		return Options{}, fmt.Errorf("the relayhost recipe no longer uses relayhost = %s and a transport table; update postfixtest", recipeGatewayAddr)
	}
	gw := "[127.0.0.1]:" + strconv.Itoa(gatewayPort)
	main := cloneMap(r.MainCF)
	main["relayhost"] = gw
	var entries []string
	for line := range strings.SplitSeq(r.Transport, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		entries = append(entries, f[0]+"="+strings.ReplaceAll(f[1], recipeGatewayAddr, gw))
	}
	if len(entries) == 0 {
		return Options{}, fmt.Errorf("the relayhost recipe's transport table has no entries")
	}
	main["transport_maps"] = "inline:{ " + strings.Join(entries, ", ") + " }"
	return Options{MainCF: main}, nil
}

// MustReadRecipe is ReadRecipe for tests: it fails t on error.
func MustReadRecipe(t testing.TB, doc, section string) *Recipe {
	t.Helper()
	r, err := ReadRecipe(doc, section)
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	return r
}

func cloneMap(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// codeBlock returns the first fenced block after the heading in sec.
func codeBlock(sec, heading string) (string, error) {
	i := strings.Index(sec, "\n"+heading)
	if i < 0 {
		return "", fmt.Errorf("no heading %q", heading)
	}
	rest := sec[i+1:]
	start := strings.Index(rest, "```")
	// The block belongs to this heading only if no other heading comes
	// before it.
	if start < 0 || strings.Contains(rest[len(heading):start], "\n##") {
		return "", fmt.Errorf("no code block under %q", heading)
	}
	rest = rest[start:]
	nl := strings.IndexByte(rest, '\n')
	if nl < 0 {
		return "", fmt.Errorf("unterminated code block under %q", heading)
	}
	end := strings.Index(rest[nl:], "\n```")
	if end < 0 {
		return "", fmt.Errorf("unterminated code block under %q", heading)
	}
	return rest[nl+1 : nl+end+1], nil
}

// parseMainCF reads "name = value" lines, skipping comments.
func parseMainCF(text string) (map[string]string, error) {
	m := map[string]string{}
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("main.cf line %q has no =", line)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m, nil
}

// chrootOff sets the chroot column (the fifth) of every master.cf entry to
// n, and gives the stock "smtp inet" service the harness's main port.
func chrootOff(text string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(text, "\n") {
		if line != "" && line[0] != ' ' && line[0] != '\t' && line[0] != '#' {
			f := strings.Fields(line)
			if len(f) >= 8 {
				f[4] = "n"
				if f[0] == "smtp" && f[1] == "inet" {
					f[0] = `127.0.0.1:{{port "smtpd"}}`
				}
				line = strings.Join(f, " ")
			}
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}
