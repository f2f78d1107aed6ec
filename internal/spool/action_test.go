package spool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestActionsOfOldFilesLoad: an envelope written before actions were typed
// (the literal JSON of the old string field) loads with each version's
// action as the typed constant, so a spool survives the upgrade; an
// envelope naming an action no version of smimegate wrote is damaged and
// goes to corrupt/ at start-up, never to the courier.
func TestActionsOfOldFilesLoad(t *testing.T) {
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	commit := func() string {
		in, err := s.NewMessage()
		if err != nil {
			t.Fatal(err)
		}
		in.Write([]byte("Subject: x\r\n\r\nbody\r\n"))
		env := &Envelope{Sender: "a@example.net", Recipients: []Recipient{{Addr: "b@example.org"}}, Client: "192.0.2.1:25"}
		if err := in.Commit(env); err != nil {
			t.Fatal(err)
		}
		return env.ID
	}
	old, bad := commit(), commit()
	s.Close()
	// The envelope as the string-typed field wrote it: every action word.
	oldJSON := func(id, action string) string {
		return `{"id":"` + id + `","sender":"a@example.net","recipients":[{"addr":"b@example.org"}],"client":"192.0.2.1:25","trusted":false,` +
			`"arrival":"2026-12-01T10:00:00Z","size":20,"stage":"routed","versions":[` +
			`{"action":"pass","recipients":[{"addr":"b@example.org","state":"delivered"}]},` +
			`{"action":"` + action + `","domain":"example.org","recipients":[{"addr":"c@example.org","state":"pending"}]}]}`
	}
	q := filepath.Join(dir, "queue")
	if err := os.WriteFile(filepath.Join(q, envName(old)), []byte(oldJSON(old, "hold")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(q, envName(bad)), []byte(oldJSON(bad, "send-in-clear")), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, logs := openTest(t, dir)
	env, err := s2.Load(old)
	if err != nil {
		t.Fatalf("an envelope of the old format does not load: %v", err)
	}
	if len(env.Versions) != 2 || env.Versions[0].Action != ActionPass || env.Versions[1].Action != ActionHold {
		t.Errorf("versions of the old envelope: %+v", env.Versions)
	}
	if _, err := s2.Load(bad); err == nil {
		t.Error("an envelope with an unknown action loaded")
	}
	corrupt := strings.Join(files(t, filepath.Join(dir, "corrupt")), " ")
	if !strings.Contains(corrupt, envName(bad)) || !strings.Contains(logs.String(), `unknown action \"send-in-clear\"`) {
		t.Errorf("the envelope with an unknown action is not in corrupt/ (%s), log:\n%s", corrupt, logs.String())
	}
	for _, a := range []Action{ActionPass, ActionEncrypt, ActionDecrypt, ActionHold, ActionRefuse} {
		if !a.Valid() {
			t.Errorf("%q is not valid", a)
		}
	}
	if Action("").Valid() {
		t.Error("the empty action is valid")
	}
}
