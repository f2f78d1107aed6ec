package spool

import (
	"bytes"
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
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

// FuzzTrailer feeds arbitrary bytes, as the content of an original, to the
// trailer parser that Load, OpenData and recovery run: it must never panic,
// a trailer it accepts must account for every byte of the file, and a file
// built from any data and envelope must parse back to exactly those.
func FuzzTrailer(f *testing.F) {
	env, _ := json.Marshal(&Envelope{ID: "01k1af74tdq9vt0xrge2", Stage: StageReceived, Size: 5})
	good := appendFooter(append([]byte("hello"), env...), len(env))
	f.Add(good, []byte("data"), env)
	f.Add(good[:len(good)-3], []byte(""), []byte("{}"))
	f.Add([]byte("SMGENV01"), []byte("ends SMGENV01"), []byte(""))
	f.Add(appendFooter(nil, 1<<40), []byte{}, []byte("x"))
	f.Fuzz(func(t *testing.T, file, data, envJSON []byte) {
		size := int64(len(file))
		dataLen, b, err := parseTrailer(bytes.NewReader(file), size)
		if err == nil {
			if dataLen < 0 || dataLen+int64(len(b))+int64(footerSize) != size || !bytes.Equal(file[dataLen:dataLen+int64(len(b))], b) {
				t.Fatalf("accepted a trailer that does not fit: data %d, trailer %d, file %d", dataLen, len(b), size)
			}
		}
		decodeTrailer(bytes.NewReader(file), size, "01k1af74tdq9vt0xrge2")

		built := appendFooter(append(append([]byte{}, data...), envJSON...), len(envJSON))
		dataLen, b, err = parseTrailer(bytes.NewReader(built), int64(len(built)))
		if err != nil || dataLen != int64(len(data)) || !bytes.Equal(b, envJSON) {
			t.Fatalf("round trip of %d data and %d trailer bytes: %d, %d, %v", len(data), len(envJSON), dataLen, len(b), err)
		}
	})
}

// FuzzWorkTable feeds arbitrary bytes, as the content of the work file, to
// the parser Open runs on it: it must never panic, every marker it keeps
// must be a valid id with a count in range, each id once, every slot must be
// exactly one of kept, free or freed, and a slot it writes must parse back.
func FuzzWorkTable(f *testing.F) {
	id := "01k1af74tdq9vt0xrge2"
	f.Add(encodeWorkSlot(id, 1), id, 3)
	f.Add(append(encodeWorkSlot(id, 2), encodeWorkSlot(id, 5)...), id, 64)
	f.Add(append(make([]byte, workSlotSize), "01k1af74tdq9vt0xrge2 00                        \n"...), id, 0)
	f.Add([]byte("01k1af74tdq9vt0xrge2 65                        \nxx"), "../x", 65)
	f.Fuzz(func(t *testing.T, data []byte, id string, starts int) {
		keep := func(s string) bool { return s[0] != '0' || len(data)%2 == 0 }
		tab, toFree, _ := parseWorkTable(data, keep)
		if tab.used != min(len(data)/workSlotSize, maxWorkSlots) {
			t.Fatalf("%d slots used of %d bytes", tab.used, len(data))
		}
		seen := map[int]bool{}
		for mid, m := range tab.markers {
			if !validID(mid) || m.starts < 1 || m.starts > maxWorkStarts || m.slot < 0 || m.slot >= tab.used || seen[m.slot] {
				t.Fatalf("kept marker %q %+v", mid, m)
			}
			if got, n, free, ok := decodeWorkSlot(data[m.slot*workSlotSize : (m.slot+1)*workSlotSize]); !ok || free || got != mid || n != m.starts {
				t.Fatalf("marker %q %+v is not what slot %d holds", mid, m, m.slot)
			}
			seen[m.slot] = true
		}
		for _, slot := range tab.free {
			if seen[slot] || slot < 0 || slot >= tab.used {
				t.Fatalf("slot %d both free and in use, or out of range", slot)
			}
			seen[slot] = true
		}
		if len(seen) != tab.used {
			t.Fatalf("%d of %d slots accounted for", len(seen), tab.used)
		}
		if len(toFree) > len(tab.free) {
			t.Fatalf("%d slots to free, %d free", len(toFree), len(tab.free))
		}
		if validID(id) && starts >= 1 && starts <= maxWorkStarts {
			b := encodeWorkSlot(id, starts)
			if got, n, free, ok := decodeWorkSlot(b); len(b) != workSlotSize || !ok || free || got != id || n != starts {
				t.Fatalf("slot %q for %q %d parses as %q %d %v %v", b, id, starts, got, n, free, ok)
			}
		}
	})
}

// FuzzValidID: an id the queue commands and the admin API accept must be
// one path element that names nothing special, and stay the same in a URL.
func FuzzValidID(f *testing.F) {
	for _, s := range []string{NewID(), "../queue/01k1af74tdq9vt0xrge2", "01k1af74tdq9vt0xrg%2", "..", "01k1af74tdq9vt0xrge2\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidID(s) {
			return
		}
		if len(s) != idLen || filepath.Base(s) != s || s == "." || s == ".." || url.PathEscape(s) != s || strings.ContainsAny(s, "/.%\\\x00 ") {
			t.Fatalf("accepted id %q", s)
		}
	})
}
