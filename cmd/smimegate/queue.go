package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"smimegate/internal/config"
	"smimegate/internal/gateway"
	"smimegate/internal/spool"
)

func runQueue(args []string) error {
	return areaCommand("queue", "list, show ID, flush, delete ID or release-plain ID", args, func(q *queueAccess, pos []string) (bool, error) {
		switch {
		case pos[0] == "list" && len(pos) == 1:
			envs, err := q.list("queue")
			if err == nil {
				printQueue(os.Stdout, envs)
			}
			return true, err
		case pos[0] == "flush" && len(pos) == 1:
			return true, q.flush()
		case pos[0] == "delete" && len(pos) == 2:
			return true, q.act("queue", pos[1], "delete")
		case pos[0] == "release-plain" && len(pos) == 2:
			// The one way a message that policy held for encryption
			// leaves in the clear: the operator says so, for one message.
			return true, q.act("queue", pos[1], "release-plain")
		}
		return false, nil
	})
}

func runQuarantine(args []string) error {
	return areaCommand("quarantine", "list, show ID, release ID or delete ID", args, func(q *queueAccess, pos []string) (bool, error) {
		switch {
		case pos[0] == "list" && len(pos) == 1:
			envs, err := q.list("quarantine")
			if err == nil {
				printQuarantine(os.Stdout, envs)
			}
			return true, err
		case (pos[0] == "release" || pos[0] == "delete") && len(pos) == 2:
			return true, q.act("quarantine", pos[1], pos[0])
		}
		return false, nil
	})
}

// areaCommand is what the queue and quarantine commands share: flags,
// configuration, the access to a running or stopped gateway, and "show ID".
// run handles the area's own verbs and says whether it knew the verb.
func areaCommand(area, verbs string, args []string, run func(q *queueAccess, pos []string) (bool, error)) error {
	fs := newFlagSet(area, strings.NewReplacer(", ", " | ", " or ", " | ").Replace(verbs)+"  [-config FILE]")
	cfgPath := configFlag(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: say %s", errUsage, verbs)
	}
	// Every verb with an argument takes a queue id. It is checked before
	// anything is done with it: it goes into a file name or an admin API
	// URL, where "../queue/ID" would name another message.
	if len(pos) == 2 {
		if err := checkQueueID(pos[1]); err != nil {
			return err
		}
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if err := actAsStateDirOwner(cfg.StateDir, os.Stderr); err != nil {
		return err
	}
	q := newQueueAccess(cfg)
	if pos[0] == "show" && len(pos) == 2 {
		ewh, err := q.show(area, pos[1])
		if err != nil {
			return err
		}
		return printShow(os.Stdout, ewh)
	}
	if known, err := run(q, pos); known {
		return err
	}
	return fmt.Errorf("%w: %s %s: expected %s", errUsage, area, strings.Join(pos, " "), verbs)
}

// checkQueueID refuses anything that is not a queue id, as a usage error.
func checkQueueID(id string) error {
	if !spool.ValidID(id) {
		return fmt.Errorf("%w: %q is not a queue id (20 characters, digits and lower-case letters, as queue list shows them)", errUsage, id)
	}
	return nil
}

// parseInterspersed parses flags that may stand before, between or after
// the positional arguments ("queue show ID -config FILE").
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// queueAccess reaches the queue through the running gateway's admin API
// when one runs (so that the gateway's schedule and the files agree), and
// through the files when none does.
type queueAccess struct {
	cfg     *config.Config
	running bool
	client  *adminClient // made at the first API call
}

func newQueueAccess(cfg *config.Config) *queueAccess {
	return &queueAccess{cfg: cfg, running: spool.GatewayRunning(cfg.StateDir)}
}

func (q *queueAccess) api(method, path string, out any) error {
	if q.client == nil {
		c, err := newAdminClient(q.cfg)
		if err != nil {
			return err
		}
		q.client = c
	}
	return q.client.do(method, path, out)
}

func (q *queueAccess) spool() (*spool.Spool, error) {
	return spool.Open(q.cfg.StateDir, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func (q *queueAccess) list(area string) ([]*spool.Envelope, error) {
	var envs []*spool.Envelope
	if q.running {
		return envs, q.api("GET", "/"+area, &envs)
	}
	sp, err := q.spool()
	if err != nil {
		return nil, err
	}
	if area == "quarantine" {
		return sp.ListQuarantine()
	}
	return sp.List()
}

func (q *queueAccess) show(area, id string) (*gateway.EnvelopeWithHeader, error) {
	if err := checkQueueID(id); err != nil {
		return nil, err
	}
	var ewh gateway.EnvelopeWithHeader
	if q.running {
		return &ewh, q.api("GET", "/"+area+"/"+id, &ewh)
	}
	sp, err := q.spool()
	if err != nil {
		return nil, err
	}
	var data []byte
	if area == "quarantine" {
		ewh.Envelope, err = sp.LoadQuarantined(id)
		if err == nil {
			data, err = sp.ReadQuarantinedData(id)
		}
	} else {
		ewh.Envelope, err = sp.Load(id)
		if err == nil {
			data, err = sp.ReadData(id, "")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", area, id, err)
	}
	ewh.Header = string(gateway.HeaderSection(data))
	return &ewh, nil
}

func (q *queueAccess) flush() error {
	if q.running {
		var out map[string]int
		if err := q.api("POST", "/queue/flush", &out); err != nil {
			return err
		}
		fmt.Printf("%d message(s) scheduled for delivery now\n", out["scheduled"])
		return nil
	}
	sp, err := q.spool()
	if err != nil {
		return err
	}
	envs, err := sp.List()
	if err != nil {
		return err
	}
	for _, env := range envs {
		env.NextAttempt = time.Time{}
		for vi := range env.Versions {
			for ri := range env.Versions[vi].Recipients {
				env.Versions[vi].Recipients[ri].NextAttempt = time.Time{}
			}
		}
		if err := sp.Update(env); err != nil {
			return err
		}
	}
	fmt.Printf("no gateway is running: %d message(s) will be attempted as soon as it starts\n", len(envs))
	return nil
}

func (q *queueAccess) act(area, id, verb string) error {
	if err := checkQueueID(id); err != nil {
		return err
	}
	if q.running {
		if err := q.api("POST", "/"+area+"/"+id+"/"+verb, nil); err != nil {
			return fmt.Errorf("%s %s %s: %w", area, verb, id, err)
		}
	} else {
		sp, err := q.spool()
		if err != nil {
			return err
		}
		switch area + " " + verb {
		case "queue delete":
			err = sp.Remove(id)
		case "quarantine delete":
			err = sp.DeleteQuarantined(id)
		case "quarantine release":
			err = sp.Release(id)
		case "queue release-plain":
			err = releasePlainOffline(sp, id)
		}
		if err != nil {
			return fmt.Errorf("%s %s %s: %w", area, verb, id, err)
		}
	}
	if verb == "release-plain" {
		fmt.Printf("%s: held recipients released, to be sent in the clear\n", id)
		return nil
	}
	fmt.Printf("%s: %s %sd\n", id, area, verb)
	return nil
}

// releasePlainOffline is `queue release-plain` with the gateway stopped: the
// same change to the envelope that a running gateway makes, picked up at
// its next start.
func releasePlainOffline(sp *spool.Spool, id string) error {
	env, err := sp.Load(id)
	if err != nil {
		return err
	}
	if gateway.ReleaseHeld(env) == 0 {
		return fmt.Errorf("message %s has no held recipients", id)
	}
	return sp.Update(env)
}

func age(t time.Time) string {
	d := time.Since(t).Round(time.Second)
	if d >= 48*time.Hour {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

func printQueue(w io.Writer, envs []*spool.Envelope) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGE\tSENDER\tPENDING RECIPIENTS\tNEXT ATTEMPT\tLAST ERROR")
	for _, env := range envs {
		w := env.Waiting()
		pending, next, lastErr := w.Recipients, w.NextAttempt, w.LastError
		sender := env.Sender
		if sender == "" {
			sender = "<>"
		}
		nextS := "now"
		if next.After(time.Now()) {
			nextS = next.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", env.ID, age(env.Arrival), sender, strings.Join(pending, ","), nextS, oneLine(lastErr))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d message(s)\n", len(envs))
}

func printQuarantine(w io.Writer, envs []*spool.Envelope) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tQUARANTINED\tSENDER\tRECIPIENTS\tREASON")
	for _, env := range envs {
		var rcpts []string
		for _, r := range env.Recipients {
			rcpts = append(rcpts, r.Addr)
		}
		sender := env.Sender
		if sender == "" {
			sender = "<>"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", env.ID, env.QuarantinedAt.Format(time.RFC3339), sender, strings.Join(rcpts, ","), oneLine(env.Reason))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d message(s)\n", len(envs))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func printShow(w io.Writer, ewh *gateway.EnvelopeWithHeader) error {
	enc, err := json.MarshalIndent(ewh.Envelope, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s\n\n%s", enc, ewh.Header)
	return nil
}
