package ticket_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/ticket"
)

var now = time.Unix(1_714_564_800, 0)

func issue(t *testing.T, s *ticket.Signer, purpose string, expires time.Time) string {
	t.Helper()
	tk, err := s.Issue(purpose, expires)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestVerify(t *testing.T) {
	s := ticket.New(ticket.Key("counts-app", "tok", ""))
	valid := issue(t, s, "subscribe", now.Add(time.Minute))
	for _, tc := range []struct {
		name    string
		signer  *ticket.Signer
		ticket  string
		purpose string
		at      time.Time
		want    error
	}{
		{"valid", s, valid, "subscribe", now, nil},
		{"valid until its last second", s, valid, "subscribe", now.Add(time.Minute - time.Nanosecond), nil},
		{"expired", s, valid, "subscribe", now.Add(time.Minute), ticket.ErrExpired},
		{"another purpose", s, issue(t, s, "other", now.Add(time.Minute)), "subscribe", now, ticket.ErrWrongPurpose},
		{"asked for another purpose", s, valid, "other", now, ticket.ErrWrongPurpose},
		{"other credentials", ticket.New(ticket.Key("counts-app", "tok2", "")), valid, "subscribe", now, ticket.ErrForged},
		{"the token given as basic credentials", ticket.New(ticket.Key("counts-app", "", "tok")), valid, "subscribe", now, ticket.ErrForged},
		{"another application", ticket.New(ticket.Key("other-app", "tok", "")), valid, "subscribe", now, ticket.ErrForged},
		{"expiry moved later", s, strings.Replace(valid, strconv.FormatInt(now.Unix()+60, 10), strconv.FormatInt(now.Unix()+3600, 10), 1), "subscribe", now, ticket.ErrForged},
		{"purpose changed", s, strings.Replace(issue(t, s, "other", now.Add(time.Minute)), "other", "subscribe", 1), "subscribe", now, ticket.ErrForged},
		{"empty", s, "", "subscribe", now, ticket.ErrMalformed},
		{"another version", s, "v2" + strings.TrimPrefix(valid, "v1"), "subscribe", now, ticket.ErrMalformed},
		{"MAC not base64", s, valid[:strings.LastIndexByte(valid, '.')] + ".!!", "subscribe", now, ticket.ErrForged},
		{"MAC with a line break", s, valid + "\r", "subscribe", now, ticket.ErrForged},
		{"a field more", s, valid + ".x", "subscribe", now, ticket.ErrMalformed},
	} {
		if err := tc.signer.Verify(tc.ticket, tc.purpose, tc.at); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify(%q) = %v; want %v", tc.name, tc.ticket, err, tc.want)
		}
	}
	// Any one byte changed: refused.
	for i := range len(valid) {
		for _, c := range []byte{'0', 'A', '.', '_'} {
			if c == valid[i] {
				continue
			}
			changed := valid[:i] + string(c) + valid[i+1:]
			if err := s.Verify(changed, "subscribe", now); err == nil {
				t.Errorf("Verify(%q), %q with byte %d changed: accepted", changed, valid, i)
			}
		}
	}
}

func TestIssueRefusesAPurposeThatIsNotAWord(t *testing.T) {
	s := ticket.New(ticket.Key("counts-app"))
	for _, purpose := range []string{"", "sub.scribe", "Subscribe", "sub scribe"} {
		if _, err := s.Issue(purpose, now); err == nil {
			t.Errorf("Issue(%q): no error", purpose)
		}
	}
}

// Whatever a client sends, Verify does not panic, and accepts nothing
// but a ticket the signer issued.
func FuzzVerify(f *testing.F) {
	s := ticket.New(ticket.Key("counts-app", "tok", ""))
	valid, _ := s.Issue("subscribe", now.Add(time.Minute))
	// Other spellings of the valid MAC's bytes: its last character with
	// other unused bits, a line break after it.
	other := valid[:len(valid)-1] + string(valid[len(valid)-1]^1)
	for _, seed := range []string{valid, "", "v1...", "v1.subscribe.1.", "v1.subscribe.-1.AAAA", valid + "=", other, valid + "\r"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tk string) {
		if s.Verify(tk, "subscribe", now) != nil {
			return
		}
		fields := strings.Split(tk, ".")
		expires, _ := strconv.ParseInt(fields[2], 10, 64)
		if again, _ := s.Issue("subscribe", time.Unix(expires, 0)); again != tk {
			t.Errorf("Verify accepted %q, which the signer issues as %q", tk, again)
		}
	})
}
