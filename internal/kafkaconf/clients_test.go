package kafkaconf

import (
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/testkit"
)

func TestLevel(t *testing.T) {
	want := []slog.Level{slog.LevelError, slog.LevelError, slog.LevelError, slog.LevelError,
		slog.LevelWarn, slog.LevelInfo, slog.LevelInfo, slog.LevelDebug}
	for syslog, w := range want {
		if got := Level(syslog); got != w {
			t.Errorf("Level(%d) = %v, want %v", syslog, got, w)
		}
	}
}

// find returns the first line whose attributes include all of want.
func find(t *testing.T, l *testkit.LogBuffer, want map[string]any) map[string]any {
	all, err := l.JSONLines()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range all {
		match := true
		for k, v := range want {
			match = match && fmt.Sprint(line[k]) == fmt.Sprint(v)
		}
		if match {
			return line
		}
	}
	return nil
}

// closedPort is a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Every kind of client writes librdkafka's lines (here: the failed
// connections to a broker that is not there) to its slog logger, with
// the attributes and the level docs/operations.md describes, and stops
// its log goroutines when it closes.
func TestClientsLogThroughSlog(t *testing.T) {
	cfg := config.Default()
	cfg.InstanceID = "abacus-0"
	cfg.BootstrapServers = closedPort(t)
	out := &testkit.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(out, nil)).With("component", "test")

	var closers []func()
	c, err := NewConsumer(Consumer(cfg), log, RoleConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("input-topic", nil); err != nil {
		t.Fatal(err)
	}
	closers = append(closers, func() { c.Close() })
	p, err := NewProducer(Producer(cfg), log, RoleProducer)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range p.Events() {
		}
	}()
	closers = append(closers, p.Close)
	a, err := NewAdmin(Admin(cfg), log, RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	closers = append(closers, a.Close)

	for _, role := range []string{RoleConsumer, RoleProducer, RoleAdmin} {
		want := map[string]any{"level": "ERROR", "component": "test", KeyLogger: LoggerLibrdkafka, KeyClient: role, KeyFacility: "FAIL", KeySyslogLevel: 3}
		var line map[string]any
		deadline := time.Now().Add(15 * time.Second)
		for line == nil && time.Now().Before(deadline) {
			if line = find(t, out, want); line == nil {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if line == nil {
			t.Fatalf("no line %v within 15s; the log:\n%s", want, out.String())
		}
		if name := fmt.Sprint(line[KeyName]); !strings.HasPrefix(name, "counts-app-abacus-0-"+role+"#") {
			t.Errorf("%s: rdkafka_name %q, want the client id and librdkafka's number", role, name)
		}
		if msg := fmt.Sprint(line["msg"]); !strings.Contains(msg, cfg.BootstrapServers) {
			t.Errorf("%s: message %q does not name the broker", role, msg)
		}
	}

	for _, c := range closers {
		c()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "kafkaconf.drainLogs") && !strings.Contains(stacks, "kafkaconf.NewAdmin.func") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log goroutines still running 5s after the clients closed:\n%s", stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// directClient is a call that makes a librdkafka client without its log
// channel.
var directClient = regexp.MustCompile(`\bkafka\.New(Consumer|Producer|AdminClient)\(`)

// Every librdkafka client of the process comes from this package, so
// none writes to stderr. The test kit's clients live in the test process,
// not in abacus.
func TestNoClientBypassesTheLogChannel(t *testing.T) {
	root := filepath.Join("..", "..")
	for _, dir := range []string{"cmd", "internal"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			if d.IsDir() && (rel == filepath.Join("internal", "kafkaconf") || rel == filepath.Join("internal", "testkit")) {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for i, line := range strings.Split(string(src), "\n") {
				if directClient.MatchString(line) {
					t.Errorf("%s:%d makes a client without its log channel (use kafkaconf.NewConsumer, NewProducer or NewAdmin): %s", rel, i+1, strings.TrimSpace(line))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The check sees what it looks for.
	if !directClient.MatchString("c, err := kafka.NewConsumer(conf)") || directClient.MatchString("kafkaconf.NewConsumer(conf, log, RoleConsumer)") {
		t.Fatal("the pattern no longer tells a direct client from ours")
	}
}
