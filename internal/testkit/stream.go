package testkit

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
	"testing"
	"time"
)

// StalledStream asks for the stream at rawURL (server-sent events) over a
// connection whose receive buffer is 4 KiB, and returns it with the
// request sent. A caller that never reads it is a subscriber that stopped
// reading: the server's writes block after a few KiB, not megabytes.
// ReadHead reads the answer's head without taking any of its body.
func StalledStream(t testing.TB, rawURL string) net.Conn {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			// Before connect, so the advertised window stays small.
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", u.RequestURI(), u.Host); err != nil {
		t.Fatal(err)
	}
	return conn
}

// ReadHead reads an answer's status line and headers from conn, a byte at
// a time so that none of the body is taken, waiting at most timeout.
func ReadHead(t testing.TB, conn net.Conn, timeout time.Duration) string {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	defer conn.SetReadDeadline(time.Time{})
	var head []byte
	one := make([]byte, 1)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := conn.Read(one); err != nil {
			t.Fatalf("read the answer's head (%q so far): %v", head, err)
		}
		head = append(head, one[0])
	}
	return string(head)
}
