package sasl

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
)

// FuzzSCRAM runs arbitrary client messages through every SCRAM
// configuration. The server nonce is fixed, so the fuzzer can reach the
// proof check; seeds include the RFC 7677 exchange, which succeeds.
func FuzzSCRAM(f *testing.F) {
	f.Add(uint8(0), []byte(rfcClientFirst), []byte(rfcClientFinal))
	f.Add(uint8(1), []byte("y,,n=user,r=rOprNGfwEbeRWgbNEkqO"), []byte("c=eSws,r="+rfcNonce+",p="+rfcProof))
	cb := &ChannelBinding{Type: TLSExporter, Data: bytes.Repeat([]byte{7}, 32)}
	const gs2 = "p=tls-exporter,a=user,"
	cbind := base64.StdEncoding.EncodeToString(append([]byte(gs2), cb.Data...))
	f.Add(uint8(2), []byte(gs2+"n=user,r=rOprNGfwEbeRWgbNEkqO"), []byte("c="+cbind+",r="+rfcNonce+",p="+rfcProof))
	f.Add(uint8(0), []byte("n,a=a=2Cb,n=u=3D,r=x,e=1"), []byte("c=biws,r=x,p=AAAA"))
	f.Add(uint8(0), []byte(nil), []byte(rfcClientFirst))
	b := newRFCBackend(f)
	f.Fuzz(func(t *testing.T, mode uint8, first, final []byte) {
		plus, offered := mode%3 == 2, mode%3 != 0
		var binding *ChannelBinding
		if offered {
			binding = cb
		}
		srv := newRFCServer(b, binding, plus, offered)
		for _, msg := range [][]byte{first, final} {
			ch, done, err := srv.Next(t.Context(), msg)
			if len(ch) > MaxResponse+128 {
				t.Fatalf("challenge of %d bytes", len(ch))
			}
			if err != nil {
				if !done {
					t.Fatalf("error %v without the end of the exchange", err)
				}
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrAuthFailed) && !errors.Is(err, ErrChannelBinding) {
					t.Fatalf("error %v matches none of the package's errors", err)
				}
				if !bytes.HasPrefix(ch, []byte("e=")) || srv.Identity() != nil {
					t.Fatalf("failure with challenge %q, identity %v", ch, srv.Identity())
				}
				return
			}
			if done {
				if !bytes.HasPrefix(ch, []byte("v=")) || srv.Identity() == nil {
					t.Fatalf("success with challenge %q, identity %v", ch, srv.Identity())
				}
				return
			}
		}
	})
}

// FuzzPlain checks that parsePlain never panics and accepts only what
// RFC 4616 allows, returning the fields it was given.
func FuzzPlain(f *testing.F) {
	f.Add([]byte("\x00user\x00pencil"))
	f.Add([]byte("admin\x00user\x00pencil"))
	f.Add([]byte("\x00\x00"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		authzid, authcid, passwd, err := parsePlain(msg)
		if err != nil {
			return
		}
		if authcid == "" || passwd == "" {
			t.Fatalf("accepted empty authcid %q or passwd %q", authcid, passwd)
		}
		if got := authzid + "\x00" + authcid + "\x00" + passwd; got != string(msg) {
			t.Fatalf("fields %q, %q, %q do not make up %q", authzid, authcid, passwd, msg)
		}
		for _, field := range []string{authzid, authcid, passwd} {
			if len(field) > maxField || checkText("field", []byte(field)) != nil {
				t.Fatalf("accepted field %q", field)
			}
		}
	})
}
