package ticket

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The reasons Verify refuses a ticket.
var (
	ErrMalformed    = errors.New("not a ticket")
	ErrForged       = errors.New("ticket not issued with the credentials in force")
	ErrWrongPurpose = errors.New("ticket issued for another purpose")
	ErrExpired      = errors.New("ticket expired")
)

// version is the format's, the first field of every ticket.
const version = "v1"

// Key derives the signing key from the application id and the
// credentials (the bearer token and the basic credentials, empty when
// not set). Each part is length-prefixed, so that no two different sets
// of credentials give the same key.
func Key(applicationID string, credentials ...string) []byte {
	mac := hmac.New(sha256.New, []byte("abacus ticket key "+version))
	for _, part := range append([]string{applicationID}, credentials...) {
		mac.Write(binary.BigEndian.AppendUint32(nil, uint32(len(part))))
		mac.Write([]byte(part))
	}
	return mac.Sum(nil)
}

// Signer issues and verifies tickets under one key; its methods may be
// called from many goroutines at once.
type Signer struct {
	key []byte
}

// New is a Signer under key (see Key).
func New(key []byte) *Signer {
	return &Signer{key: append([]byte(nil), key...)}
}

// Issue returns a ticket for purpose (lower-case letters and dashes)
// that expires at expires, to the second.
func (s *Signer) Issue(purpose string, expires time.Time) (string, error) {
	if purpose == "" || strings.Trim(purpose, "abcdefghijklmnopqrstuvwxyz-") != "" {
		return "", fmt.Errorf("ticket purpose %q: want lower-case letters and dashes", purpose)
	}
	payload := version + "." + purpose + "." + strconv.FormatInt(expires.Unix(), 10)
	return payload + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload)), nil
}

// Verify checks that ticket was issued under this key for purpose and
// has not expired at now.
func (s *Signer) Verify(ticket, purpose string, now time.Time) error {
	fields := strings.Split(ticket, ".")
	if len(fields) != 4 || fields[0] != version {
		return ErrMalformed
	}
	// The MACs are compared as issued, encoded: a decoder would take
	// other spellings of the same bytes (line breaks, the last
	// character's unused bits), and a ticket has one spelling only.
	want := base64.RawURLEncoding.EncodeToString(s.mac(strings.Join(fields[:3], ".")))
	if !hmac.Equal([]byte(fields[3]), []byte(want)) {
		return ErrForged
	}
	expires, err := strconv.ParseInt(fields[2], 10, 64)
	switch {
	case err != nil:
		return ErrMalformed // (signed, so only a faulty signer could have made it)
	case fields[1] != purpose:
		return ErrWrongPurpose
	case now.Unix() >= expires:
		return ErrExpired
	}
	return nil
}

func (s *Signer) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}
