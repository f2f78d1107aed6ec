package spool

import (
	"encoding/json"
	"testing"
)

// FuzzEnvelope feeds arbitrary bytes to the envelope decoder that recovery
// runs on every file of the queue: it must never panic, and an envelope it
// accepts must name only data files that stay inside the spool.
func FuzzEnvelope(f *testing.F) {
	good, _ := json.Marshal(&Envelope{ID: NewID(), Stage: StageRouted, Versions: []Version{{Data: "vabc", Action: "encrypt"}}})
	f.Add(good)
	f.Add([]byte(`{"id":"01k1af74tdq9vt0xrge2","stage":"received"}`))
	f.Add([]byte(`{"id":"01k1af74tdq9vt0xrge2","stage":"routed","versions":[{"data":"../../etc"}]}`))
	f.Add([]byte(`{"id":"../x","stage":"received"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		if !validID(env.ID) {
			t.Fatalf("accepted id %q", env.ID)
		}
		for _, d := range references(env) {
			name := dataName(env.ID, d)
			id, kind, data, ok := parseName(name)
			if !ok || id != env.ID || kind != "msg" || data != d {
				t.Fatalf("data %q gives file name %q that does not parse back", d, name)
			}
		}
	})
}

// FuzzParseName: file names found in the spool directories.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"01k1af74tdq9vt0xrge2.json", "01k1af74tdq9vt0xrge2.msg", "01k1af74tdq9vt0xrge2.vabc.msg", "x.json", "01k1af74tdq9vt0xrge2.a.b.msg", ".json"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		id, kind, data, ok := parseName(name)
		if !ok {
			return
		}
		var back string
		if kind == "json" {
			back = envName(id)
		} else {
			back = dataName(id, data)
		}
		if back != name {
			t.Fatalf("%q parsed as (%q, %q, %q), which names %q", name, id, kind, data, back)
		}
	})
}
