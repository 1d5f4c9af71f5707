package sasl

import (
	"bytes"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
)

// TestDeriveSCRAMKeysXDG checks DeriveSCRAMKeys against xdg-go/scram's
// independent derivation.
func TestDeriveSCRAMKeysXDG(t *testing.T) {
	for _, password := range []string{"pencil", "TrustNô1", "pass word"} {
		got, err := DeriveSCRAMKeys(password, testSalt, testIterations)
		if err != nil {
			t.Fatal(err)
		}
		want, err := newSCRAMClient(t, "user", password, "").GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(testSalt), Iters: testIterations})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.StoredKey, want.StoredKey) || !bytes.Equal(got.ServerKey, want.ServerKey) {
			t.Errorf("%q: StoredKey %x ServerKey %x, xdg-go/scram %x %x", password, got.StoredKey, got.ServerKey, want.StoredKey, want.ServerKey)
		}
		if !bytes.Equal(got.Salt, testSalt) || got.Iterations != testIterations {
			t.Errorf("%q: salt %q, %d iterations; want %q, %d", password, got.Salt, got.Iterations, testSalt, testIterations)
		}
	}
}

// TestDeriveSCRAMKeysSASLprep checks that passwords equal under SASLprep
// (RFC 4013 section 3 examples) give the same keys.
func TestDeriveSCRAMKeysSASLprep(t *testing.T) {
	for _, p := range [][2]string{
		{"I\u00adX", "IX"},              // soft hyphen mapped to nothing
		{"pass\u2003word", "pass word"}, // non-ASCII space mapped to space
		{"\u2168", "IX"},                // NFKC
	} {
		a, err := DeriveSCRAMKeys(p[0], testSalt, testIterations)
		if err != nil {
			t.Fatal(err)
		}
		b, err := DeriveSCRAMKeys(p[1], testSalt, testIterations)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.StoredKey, b.StoredKey) || !bytes.Equal(a.ServerKey, b.ServerKey) {
			t.Errorf("%q and %q give different keys", p[0], p[1])
		}
	}
}

func TestDeriveSCRAMKeysErrors(t *testing.T) {
	for _, tc := range []struct {
		name, password string
		salt           []byte
		iterations     int
	}{
		{"too few iterations", "pencil", testSalt, 4095},
		{"empty salt", "pencil", nil, testIterations},
		{"prohibited character", "pen\u0007cil", testSalt, testIterations},
		{"unassigned code point", "pencil\U0001F600", testSalt, testIterations},
		{"empty after SASLprep", "\u00ad", testSalt, testIterations},
		{"empty", "", testSalt, testIterations},
	} {
		k, err := DeriveSCRAMKeys(tc.password, tc.salt, tc.iterations)
		if err == nil {
			t.Errorf("%s: got %+v, want an error", tc.name, k)
			continue
		}
		if tc.password != "" && strings.Contains(err.Error(), tc.password) {
			t.Errorf("%s: error %q reveals the password", tc.name, err)
		}
	}
}

func TestNewSCRAMKeys(t *testing.T) {
	k1, err := NewSCRAMKeys("pencil")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := NewSCRAMKeys("pencil")
	if err != nil {
		t.Fatal(err)
	}
	if len(k1.Salt) < 16 || k1.Iterations != SCRAMIterations {
		t.Errorf("salt of %d bytes, %d iterations; want 16+, %d", len(k1.Salt), k1.Iterations, SCRAMIterations)
	}
	if bytes.Equal(k1.Salt, k2.Salt) {
		t.Errorf("two passwords got the same salt %x", k1.Salt)
	}
	again, err := DeriveSCRAMKeys("pencil", k1.Salt, k1.Iterations)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.StoredKey, k1.StoredKey) || !bytes.Equal(again.ServerKey, k1.ServerKey) {
		t.Error("NewSCRAMKeys keys differ from DeriveSCRAMKeys with the same salt")
	}
}
