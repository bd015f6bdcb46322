package testkit

import (
	"io"
	"net"
	"sync"
	"testing"

	"github.com/abacus-streams/abacus/internal/broker"
)

// Proxy is a TCP proxy in front of a broker, for cutting the connections
// between instances and the broker. The broker advertises its own address,
// so clients bootstrapping through the proxy must reach the broker through
// it too: StartBrokerBehindProxy sets that up.
type Proxy struct {
	t      testing.TB
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// StartBrokerBehindProxy runs a kfake broker that advertises a proxy's
// address, so every client connection goes through the proxy.
func StartBrokerBehindProxy(t testing.TB, partitions int) (*broker.Broker, *Proxy) {
	t.Helper()
	p := StartProxy(t, "127.0.0.1:0", "")
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Partitions: partitions, Advertise: p.Addr(), Logger: brokerLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	p.mu.Lock()
	p.target = b.Addr()
	p.mu.Unlock()
	return b, p
}

// StartProxy listens on addr (host:port, port 0 picks one) and relays to target.
func StartProxy(t testing.TB, addr, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{t: t, ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if p.target == "" {
			err = net.ErrClosed
		}
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore accepts connections again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// Close stops the proxy and waits for its goroutines.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}
