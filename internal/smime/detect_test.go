package smime

import (
	"testing"
)

func detectString(t *testing.T, msg string) (form, bool) {
	t.Helper()
	hdr, _ := splitHeader([]byte(msg))
	h, err := scanMIMEHeader(hdr, DefaultMaxHeaderBytes)
	if err != nil {
		t.Fatalf("%q: %v", msg, err)
	}
	return detect(h)
}

func TestDetect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, header string
		encrypted    bool
		declared     bool
		cte          string
	}{
		{"ours", "Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data;\r\n\tname=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64\r\n", true, true, "base64"},
		{"enveloped", "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n", true, true, ""},
		{"upper case", "CONTENT-TYPE: APPLICATION/PKCS7-MIME; SMIME-TYPE=ENVELOPED-DATA\r\nCONTENT-TRANSFER-ENCODING: BASE64\r\n", true, true, "base64"},
		{"x-pkcs7 lf", "Content-Type: application/x-pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"\nContent-Transfer-Encoding: base64\n", true, true, "base64"},
		{"no smime-type", "Content-Type: application/pkcs7-mime; name=\"smime.p7m\"\r\n", true, true, ""},
		{"unknown smime-type", "Content-Type: application/pkcs7-mime; smime-type=foo\r\n", true, true, ""},
		{"octet-stream name", "Content-Type: application/octet-stream; name=\"SMIME.P7M\"\r\nContent-Transfer-Encoding: binary\r\n", true, false, "binary"},
		{"octet-stream filename", "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"msg.p7m\"\r\n", true, false, ""},
		{"octet-stream rfc2231 filename", "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=utf-8''nachricht.p7m\r\n", true, false, ""},
		{"mangled parameters", "Content-Type: application/pkcs7-mime;; smime-type=enveloped-data; name=smime.p7m; name=x\r\n", true, true, ""},
		{"missing semicolon", "Content-Type: application/x-pkcs7-mime smime-type=enveloped-data\r\n", true, true, ""},
		{"signed-data", "Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n", false, false, ""},
		{"compressed", "Content-Type: application/pkcs7-mime; smime-type=compressed-data\r\n", false, false, ""},
		{"certs-only", "Content-Type: application/pkcs7-mime; smime-type=certs-only\r\n", false, false, ""},
		{"multipart/signed", "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=x\r\n", false, false, ""},
		{"octet-stream other", "Content-Type: application/octet-stream; name=report.pdf\r\n", false, false, ""},
		{"text", "Content-Type: text/plain\r\n", false, false, ""},
		{"none", "Subject: hi\r\n", false, false, ""},
	} {
		f, ok := detectString(t, tc.header+"\r\n")
		if ok != tc.encrypted || ok && (f.declared != tc.declared || f.cte != tc.cte) {
			t.Errorf("%s: detect = %+v, %v; want encrypted %v declared %v cte %q", tc.name, f, ok, tc.encrypted, tc.declared, tc.cte)
		}
	}
}

func TestPeekContentInfo(t *testing.T) {
	t.Parallel()
	env := append([]byte{0x06, byte(len(oidEnvelopedData))}, oidEnvelopedData...)
	auth := append([]byte{0x06, byte(len(oidAuthEnvelopedData))}, oidAuthEnvelopedData...)
	signed := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02}
	compressed := append([]byte{0x06, byte(len(oidCompressedData))}, oidCompressedData...)
	// RFC 5652 section 7: id-digestedData 1.2.840.113549.1.7.5.
	digested := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x05}
	seq := func(hdr []byte, content []byte) []byte { return append(append(hdr, content...), 0xa0, 0x00) }
	for _, tc := range []struct {
		name  string
		in    []byte
		kind  cmsKind
		total int
	}{
		{"short form", seq([]byte{0x30, 13}, env), cmsEncrypted, 15},
		{"long form", seq([]byte{0x30, 0x82, 0x01, 0x00}, auth), cmsEncrypted, 0x104},
		{"indefinite", seq([]byte{0x30, 0x80}, auth), cmsEncrypted, 0},
		{"signed", seq([]byte{0x30, 13}, signed), cmsSigned, 15},
		{"compressed", seq([]byte{0x30, 15}, compressed), cmsCompressed, 17},
		{"digested", seq([]byte{0x30, 13}, digested), cmsOther, 15},
		{"not a sequence", seq([]byte{0x31, 13}, env), notCMS, 0},
		{"no oid", []byte{0x30, 0x03, 0x02, 0x01, 0x00}, notCMS, 0},
		{"truncated oid", []byte{0x30, 0x80, 0x06, 0x09, 0x2a}, notCMS, 0},
		{"huge length", []byte{0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9}, notCMS, 0},
		{"empty", nil, notCMS, 0},
		{"base64 text", []byte("MIAGCSqGSIb3DQEHA6CAMIACAQAx"), notCMS, 0},
	} {
		kind, total := peekContentInfo(tc.in)
		if kind != tc.kind || total != tc.total {
			t.Errorf("%s: peekContentInfo = %v, %d; want %v, %d", tc.name, kind, total, tc.kind, tc.total)
		}
	}
}
