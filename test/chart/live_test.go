package chart

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/broker"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Real abacus processes for the tests that need a live /metrics: the
// binary built as `make build` builds it, run against the embedded broker
// (package broker, what `abacus broker` runs) in this process. The root
// module's internal/testkit does the same for the end-to-end tests; it is
// not imported here because its Kafka client's test dependencies would
// clash with this module's (moby/buildkit).

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// abacusBinary builds ./cmd/server once per test process.
func abacusBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "abacus-chart-test-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "abacus")
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", builtBin, "./cmd/server")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/server: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// startBroker runs the embedded broker on a free loopback port until the
// test ends and returns its address.
func startBroker(t *testing.T) string {
	t.Helper()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Partitions: 4, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b.Addr()
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// abacusProc is one abacus process.
type abacusProc struct {
	name, url string
	cmd       *exec.Cmd
	out       *syncBuffer
	exited    chan struct{}
}

// startAbacus starts member name listening on addr, with the settings
// that make tests quick (a 200 ms commit interval, a 6 s session timeout)
// and env on top; it is killed when the test ends.
func startAbacus(t *testing.T, name, addr, brokers string, env map[string]string) *abacusProc {
	t.Helper()
	p := &abacusProc{name: name, url: "http://" + addr, out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(abacusBinary(t))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ABACUS_") { // a developer's shell must not change the run
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env,
		"ABACUS_BOOTSTRAP_SERVERS="+brokers,
		"ABACUS_INSTANCE_ID="+name,
		"ABACUS_STATE_DIR="+t.TempDir(),
		"ABACUS_HTTP_ADDR="+addr,
		"ABACUS_COMMIT_INTERVAL=200ms",
		"ABACUS_KAFKA_SESSION_TIMEOUT_MS=6000",
		"ABACUS_KAFKA_HEARTBEAT_INTERVAL_MS=500",
	)
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, p.out.String())
		}
	})
	return p
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func (p *abacusProc) get(path string) (int, []byte, error) {
	resp, err := httpClient.Get(p.url + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// waitReady waits until /readyz answers 200.
func (p *abacusProc) waitReady(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		select {
		case <-p.exited:
			t.Fatalf("%s exited:\n%s", p.name, p.out.String())
		default:
		}
		code, body, err := p.get("/readyz")
		if err == nil && code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %s: %d %s %v", p.name, within, code, body, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// produce writes records to topic and waits until each is acknowledged.
// franz-go places keyed records with murmur2, as abacus expects by default.
func produce(t *testing.T, brokers, topic string, records []*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
}

// syncBuffer collects a process's output; safe to read while it writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
