package testkit

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BodyFault is what an HTTPProxy does to the body of the answers to the
// requests whose path ends with PathSuffix.
type BodyFault struct {
	PathSuffix string
	// CutAfter, when above 0, ends the body after that many bytes. The
	// answer itself ends well (the chunked body is closed), so HTTP does
	// not tell the reader: only the body's own format can.
	CutAfter int64
	// Flip, when set, changes the body byte at FlipAt (all its bits).
	Flip   bool
	FlipAt int64
}

// HTTPProxy relays HTTP requests to one target, and damages the bodies of
// chosen answers on their way back (SetFault): a fault in transit that
// TCP and HTTP let through.
type HTTPProxy struct {
	srv      *http.Server
	ln       net.Listener
	fault    atomic.Pointer[BodyFault]
	matched  atomic.Int64 // answers whose path matched the fault's
	faulted  atomic.Int64 // of them, bodies that reached the fault
	serveErr chan error
}

// StartHTTPProxy listens on addr (host:port) and relays to target (a base
// URL, http://host:port); it passes everything through until SetFault.
func StartHTTPProxy(t testing.TB, addr, target string) *HTTPProxy {
	t.Helper()
	to, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &HTTPProxy{ln: ln, serveErr: make(chan error, 1)}
	rp := &httputil.ReverseProxy{
		Rewrite:        func(r *httputil.ProxyRequest) { r.SetURL(to) },
		ModifyResponse: p.modify,
		FlushInterval:  -1,
		Transport:      &http.Transport{DisableCompression: true},
	}
	p.srv = &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { p.serveErr <- p.srv.Serve(ln) }()
	t.Cleanup(p.Close)
	return p
}

// SetFault damages the bodies of the answers matching f from now on.
func (p *HTTPProxy) SetFault(f BodyFault) { p.fault.Store(&f) }

// Matched is the answers relayed whose request path matched the fault;
// Faulted those of them whose body reached the fault (and was cut or
// changed there).
func (p *HTTPProxy) Matched() int64 { return p.matched.Load() }
func (p *HTTPProxy) Faulted() int64 { return p.faulted.Load() }

// Close stops the proxy and its connections.
func (p *HTTPProxy) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if p.srv.Shutdown(ctx) != nil {
		_ = p.srv.Close()
	}
	<-p.serveErr // http.ErrServerClosed
}

func (p *HTTPProxy) modify(resp *http.Response) error {
	f := p.fault.Load()
	if f == nil || f.PathSuffix == "" || !strings.HasSuffix(resp.Request.URL.Path, f.PathSuffix) {
		return nil
	}
	p.matched.Add(1)
	if f.CutAfter <= 0 && !f.Flip {
		return nil
	}
	resp.Body = &faultyBody{r: resp.Body, f: *f, faulted: &p.faulted}
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	return nil
}

// faultyBody applies a BodyFault to the body it reads.
type faultyBody struct {
	r       io.ReadCloser
	f       BodyFault
	n       int64 // bytes read so far
	once    sync.Once
	faulted *atomic.Int64
}

func (b *faultyBody) Read(p []byte) (int, error) {
	if b.f.CutAfter > 0 {
		if b.n >= b.f.CutAfter {
			b.once.Do(func() { b.faulted.Add(1) })
			return 0, io.EOF
		}
		p = p[:min(int64(len(p)), b.f.CutAfter-b.n)]
	}
	n, err := b.r.Read(p)
	if b.f.Flip && b.f.FlipAt >= b.n && b.f.FlipAt < b.n+int64(n) {
		p[b.f.FlipAt-b.n] ^= 0xff
		b.once.Do(func() { b.faulted.Add(1) })
	}
	b.n += int64(n)
	return n, err
}

func (b *faultyBody) Close() error { return b.r.Close() }
