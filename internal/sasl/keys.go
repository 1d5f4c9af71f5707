package sasl

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/xdg-go/stringprep"

	"github.com/latchmail/latch/internal/store"
)

// SCRAMIterations is the PBKDF2 iteration count NewSCRAMKeys uses.
//
// RFC 7677 section 4 asks for at least 4096. Latch uses more because the
// SCRAM keys are the cheapest copy of a password to attack once the
// account store leaks (the argon2id hash beside them costs far more per
// guess). The count is paid by the client on every login, never by the
// server, which only compares stored keys. It must stay at most 65536:
// Cyrus SASL (behind mbsync, mutt and many others) refuses larger counts
// as "iteration-count is too big" and the login fails. Keys keep the
// count they were made with, so changing it affects new passwords only.
const SCRAMIterations = 32768

const (
	minSCRAMIterations = 4096 // RFC 7677 section 4
	scramSaltLen       = 16   // 128 bits, as NIST SP 800-132 asks
)

// DeriveSCRAMKeys computes the stored form of a SCRAM-SHA-256 secret
// (RFC 5802 section 3) from a password, salt and iteration count: the
// password is prepared with SASLprep as a stored string (RFC 5802 section
// 2.2, RFC 4013), SaltedPassword is PBKDF2-HMAC-SHA-256 of it, StoredKey
// is H(HMAC(SaltedPassword, "Client Key")) and ServerKey is
// HMAC(SaltedPassword, "Server Key"). It fails for fewer than 4096
// iterations, an empty salt, and passwords SASLprep refuses (such as
// those with emoji, unassigned in Unicode 3.2) or leaves empty.
func DeriveSCRAMKeys(password string, salt []byte, iterations int) (*store.SCRAMKeys, error) {
	if iterations < minSCRAMIterations {
		return nil, fmt.Errorf("sasl: SCRAM iteration count %d is below the minimum of %d (RFC 7677)", iterations, minSCRAMIterations)
	}
	if len(salt) == 0 {
		return nil, errors.New("sasl: SCRAM salt is empty")
	}
	prepared, err := stringprep.SASLprep.Prepare(password)
	if err != nil {
		// The stringprep error names the offending character: keep it,
		// and any other part of the password, out of the message.
		return nil, errors.New("sasl: password contains characters SASLprep (RFC 4013) prohibits, such as control characters or emoji; choose another password")
	}
	if prepared == "" {
		return nil, errors.New("sasl: password is empty after SASLprep (RFC 4013); choose another password")
	}
	salted, err := pbkdf2.Key(sha256.New, prepared, salt, iterations, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("sasl: derive SCRAM keys: %w", err)
	}
	clientKey := hmacSHA256(salted, []byte("Client Key"))
	storedKey := sha256.Sum256(clientKey)
	return &store.SCRAMKeys{
		Salt:       bytes.Clone(salt),
		Iterations: iterations,
		StoredKey:  storedKey[:],
		ServerKey:  hmacSHA256(salted, []byte("Server Key")),
	}, nil
}

// NewSCRAMKeys derives SCRAM-SHA-256 keys for a new password with a fresh
// random 16-byte salt and SCRAMIterations iterations.
func NewSCRAMKeys(password string) (*store.SCRAMKeys, error) {
	salt := make([]byte, scramSaltLen)
	rand.Read(salt) // never fails since Go 1.24; the program dies if it could
	return DeriveSCRAMKeys(password, salt, SCRAMIterations)
}
