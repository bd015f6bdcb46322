package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// A cursor is the last key of a page, signed so that a client can only
// hand back cursors a member made: base64url(key || hmac[:16]). The key is
// not secret; the signature only keeps forged cursors out. A window
// cursor (windowCursor) is signed the same way under another name, so
// that neither kind of scan takes the other's cursors.
const cursorMACBytes = 16

// The names cursors are signed under, one per kind of scan.
const (
	keyCursorKind    = "abacus-scan-cursor:"
	windowCursorKind = "abacus-window-cursor:"
)

func cursorMAC(kind, secret string, payload []byte) []byte {
	m := hmac.New(sha256.New, []byte(kind+secret))
	m.Write(payload)
	return m.Sum(nil)[:cursorMACBytes]
}

// signCursor is the cursor of payload, signed under kind.
func signCursor(kind, secret string, payload []byte) string {
	b := append(payload[:len(payload):len(payload)], cursorMAC(kind, secret, payload)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

var errBadCursor = errors.New("cursor is not one this service issued")

// openCursor is the payload of a cursor signed under kind.
func openCursor(kind, secret, cursor string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) < cursorMACBytes {
		return nil, errBadCursor
	}
	payload, mac := b[:len(b)-cursorMACBytes], b[len(b)-cursorMACBytes:]
	if !hmac.Equal(mac, cursorMAC(kind, secret, payload)) {
		return nil, errBadCursor
	}
	return payload, nil
}

func encodeCursor(secret, key string) string {
	return signCursor(keyCursorKind, secret, []byte(key))
}

func decodeCursor(secret, cursor string) (string, error) {
	key, err := openCursor(keyCursorKind, secret, cursor)
	return string(key), err
}

// windowCursorTimes is the bytes of a window cursor's start and end.
const windowCursorTimes = 16

// encodeWindowCursor is the cursor of a window scan's page that ends with
// w: its start and end (big-endian) and its key, signed; the value is left
// out. The next page resumes strictly after (key, start, end).
func encodeWindowCursor(secret string, w Window) string {
	b := make([]byte, 0, windowCursorTimes+len(w.Key))
	b = binary.BigEndian.AppendUint64(b, uint64(w.Start))
	b = binary.BigEndian.AppendUint64(b, uint64(w.End))
	return signCursor(windowCursorKind, secret, append(b, w.Key...))
}

func decodeWindowCursor(secret, cursor string) (Window, error) {
	b, err := openCursor(windowCursorKind, secret, cursor)
	if err != nil || len(b) < windowCursorTimes {
		return Window{}, errBadCursor
	}
	return Window{
		Start: int64(binary.BigEndian.Uint64(b)),
		End:   int64(binary.BigEndian.Uint64(b[8:])),
		Key:   string(b[windowCursorTimes:]),
	}, nil
}

// parseScan reads and checks a scan's query parameters.
func (s *Server) parseScan(c echo.Context) (ScanQuery, error) {
	params, err := parseQuery(c)
	if err != nil {
		return ScanQuery{}, err
	}
	q, err := scanParams(c, params, "from", "to")
	if err != nil {
		return q, err
	}
	if v := params.Get("cursor"); v != "" {
		after, err := decodeCursor(s.cfg.ScanSecret, v)
		if err != nil {
			return q, badCursor(err)
		}
		if next := after + "\x00"; next > q.From {
			q.From = next
		}
	}
	return q, nil
}

func badCursor(err error) error {
	return fail(http.StatusBadRequest, "bad_cursor", "%v: pass back next_cursor exactly as it was returned", err)
}

// scanParams reads what key and window scans share: the prefix, the
// bounds of keys (the parameters fromName and toName) and the limit.
func scanParams(c echo.Context, params url.Values, fromName, toName string) (ScanQuery, error) {
	q := ScanQuery{Prefix: params.Get("prefix"), From: params.Get(fromName), To: params.Get(toName), Limit: defaultScanLimit}
	for name, v := range map[string]string{"prefix": q.Prefix, fromName: q.From, toName: q.To} {
		if len(v) > MaxKeyBytes {
			return q, fail(http.StatusBadRequest, "bad_parameter", "%s is %d bytes; at most %d are allowed", name, len(v), MaxKeyBytes)
		}
		if !utf8.ValidString(v) {
			return q, fail(http.StatusBadRequest, "bad_parameter", "%s is not valid UTF-8", name)
		}
	}
	max := maxScanLimit
	if forwarded(c) {
		max++ // a member asks for one more than a page to know if another follows
	}
	if v := params.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > max {
			return q, fail(http.StatusBadRequest, "bad_parameter", "limit must be a whole number from 1 to %d, not %q", maxScanLimit, v)
		}
		q.Limit = n
	}
	if q.To != "" && q.From >= q.To {
		return q, fail(http.StatusBadRequest, "bad_parameter", "%s must be before %s", fromName, toName)
	}
	return q, nil
}
