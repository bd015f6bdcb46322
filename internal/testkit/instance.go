package testkit

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/config"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds the abacus binary once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "abacus-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "abacus")
		// Stamped as make build stamps it, whatever GOFLAGS says of the
		// toolchain's own VCS stamp.
		args := []string{"build", "-o", binPath, "-ldflags", "-X main.commit=" + SourceRevision()}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/server")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// InheritedEnv is this process's environment as an abacus process
// started by a test inherits it: without the ABACUS_ variables that are
// no setting of abacus (a test harness's own, such as ABACUS_CHAOS, which
// abacus would refuse as unknown), and without every ABACUS_ variable when
// serverDefaults, so that a developer's shell cannot skew a run.
func InheritedEnv(serverDefaults bool) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "ABACUS_") || (!serverDefaults && config.KnownVariable(name)) {
			env = append(env, kv)
		}
	}
	return env
}

// SourceRevision is the checkout's commit, abbreviated to 12 digits as
// make build stamps it into the binary ("unknown" outside a checkout).
func SourceRevision() string {
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("git", "rev-parse", "--short=12", "HEAD")
	cmd.Dir = filepath.Dir(file)
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// Instance is one abacus process.
type Instance struct {
	t        testing.TB
	Name     string
	URL      string // http://host:port, or https:// with InstanceConfig.TLS
	StateDir string
	env      []string
	client   *http.Client
	cmd      *exec.Cmd
	log      *LogBuffer
	exited   chan struct{}
	started  time.Time
}

// InstanceConfig describes an instance to start.
type InstanceConfig struct {
	Name     string // member name, ABACUS_INSTANCE_ID
	Brokers  string
	StateDir string
	// Host is the loopback address to bind (default 127.0.0.1); Port 0 picks one.
	Host string
	Port int
	Env  map[string]string // further ABACUS_* settings
	// ServerDefaults runs the instance at abacus's own defaults, as a
	// benchmark measures it: without the settings that make tests quick
	// (a 200 ms commit interval, a 6 s session timeout) and without the
	// ABACUS_* variables of this process's environment, so that a
	// developer's shell cannot skew a run. Env still applies.
	ServerDefaults bool
	// TLS, when set, is how the test's requests verify an instance that
	// serves HTTPS (its ABACUS_TLS_* settings are in Env): the instance's
	// URL is https:// and its Get methods go through TLS.
	TLS *tls.Config
}

// StartInstance starts an abacus process; it is killed when the test ends.
func StartInstance(t testing.TB, c InstanceConfig) *Instance {
	t.Helper()
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = FreePort(t)
	}
	if c.StateDir == "" {
		c.StateDir = t.TempDir()
	}
	addr := c.Host + ":" + strconv.Itoa(c.Port)
	env := InheritedEnv(c.ServerDefaults)
	env = append(env,
		"ABACUS_BOOTSTRAP_SERVERS="+c.Brokers,
		"ABACUS_INSTANCE_ID="+c.Name,
		"ABACUS_STATE_DIR="+c.StateDir,
		"ABACUS_HTTP_ADDR="+addr,
	)
	if !c.ServerDefaults {
		env = append(env,
			"ABACUS_COMMIT_INTERVAL=200ms",
			// Static members that crash are replaced after this; the default 45 s
			// would only make failover tests slow.
			"ABACUS_KAFKA_SESSION_TIMEOUT_MS=6000",
			"ABACUS_KAFKA_HEARTBEAT_INTERVAL_MS=500",
		)
	}
	for k, v := range c.Env {
		env = append(env, k+"="+v)
	}
	in := &Instance{t: t, Name: c.Name, URL: "http://" + addr, StateDir: c.StateDir, env: env, client: client}
	if c.TLS != nil {
		in.URL = "https://" + addr
		in.client = &http.Client{Timeout: client.Timeout, Transport: &http.Transport{TLSClientConfig: c.TLS}}
	}
	in.start()
	t.Cleanup(func() {
		in.Kill()
		if t.Failed() {
			t.Logf("log of %s:\n%s", in.Name, in.Log())
		}
	})
	return in
}

func (in *Instance) start() {
	in.t.Helper()
	in.log = &LogBuffer{}
	in.cmd = exec.Command(Binary(in.t))
	in.cmd.Env = in.env
	in.cmd.Stdout = in.log
	in.cmd.Stderr = in.log
	in.started = time.Now()
	if err := in.cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	in.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(in.cmd, in.exited)
}

// Restart starts the process again with the same settings (after Stop or Kill).
func (in *Instance) Restart() {
	in.t.Helper()
	in.start()
}

// RestartWith starts the process again with a different state dir.
func (in *Instance) RestartWith(stateDir string) {
	in.t.Helper()
	for i, kv := range in.env {
		if strings.HasPrefix(kv, "ABACUS_STATE_DIR=") {
			in.env[i] = "ABACUS_STATE_DIR=" + stateDir
		}
	}
	in.StateDir = stateDir
	in.start()
}

// Kill sends SIGKILL: a crash.
func (in *Instance) Kill() {
	if in.cmd.Process != nil {
		_ = in.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-in.exited
}

// Stop sends SIGTERM and waits for a graceful exit; it fails the test if
// the process does not exit within timeout or exits with an error.
func (in *Instance) Stop(timeout time.Duration) {
	in.t.Helper()
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.exited:
	case <-time.After(timeout):
		in.t.Fatalf("%s did not stop within %s", in.Name, timeout)
	}
	if code := in.cmd.ProcessState.ExitCode(); code != 0 {
		in.t.Fatalf("%s exited with %d:\n%s", in.Name, code, in.Log())
	}
}

// Exited reports whether the process has ended.
func (in *Instance) Exited() bool {
	select {
	case <-in.exited:
		return true
	default:
		return false
	}
}

// Pid is the process id of the instance's current (or last) life.
func (in *Instance) Pid() int { return in.cmd.Process.Pid }

// Started is when the instance's current (or last) life was started.
func (in *Instance) Started() time.Time { return in.started }

// Log is everything the process wrote.
func (in *Instance) Log() string { return in.log.String() }

// WaitReady waits until /readyz answers 200.
func (in *Instance) WaitReady(within time.Duration) {
	in.t.Helper()
	Eventually(in.t, within, func() error {
		if in.Exited() {
			in.t.Fatalf("%s exited:\n%s", in.Name, in.Log())
		}
		code, body, err := in.Get("/readyz")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("readyz %d %s", code, body)
		}
		return nil
	})
}

// Get fetches a path of the instance.
func (in *Instance) Get(path string) (int, []byte, error) {
	return in.GetWith(path, nil)
}

// GetWith fetches a path of the instance with request headers.
func (in *Instance) GetWith(path string, header http.Header) (int, []byte, error) {
	c := in.client
	if c == nil { // an Instance made by hand, as a URL to ask
		c = client
	}
	resp, body, err := FetchWith(c, in.URL+path, header)
	if resp == nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, err
}

// GetJSON fetches a path of the instance and, if it answers 200, decodes
// the body into v.
func (in *Instance) GetJSON(path string, v any) (int, []byte, error) {
	code, body, err := in.Get(path)
	if err == nil && code == 200 {
		err = json.Unmarshal(body, v)
	}
	return code, body, err
}

// KeyCount is the body of a key lookup.
type KeyCount struct {
	Key       string `json:"key"`
	Value     int64  `json:"value"`
	Partition int32  `json:"partition"`
	ServedBy  string `json:"served_by"`
}

// Count looks a key up; code is the HTTP status.
func (in *Instance) Count(store, key string) (KeyCount, int, error) {
	var kc KeyCount
	code, _, err := in.GetJSON("/api/v1/stores/"+url.PathEscape(store)+"/keys/"+url.PathEscape(key), &kc)
	return kc, code, err
}

// Metric returns the sum of every sample of a metric family in /metrics
// whose labels contain all of labels ("name=\"value\"" pairs).
func (in *Instance) Metric(name string, labels ...string) (float64, error) {
	code, body, err := in.Get("/metrics")
	if err != nil {
		return 0, err
	}
	if code != 200 {
		return 0, fmt.Errorf("metrics: %d", code)
	}
	return SumMetric(body, name, labels...), nil
}

// MustMetric is in.Metric, failing t on an error.
func MustMetric(t testing.TB, in *Instance, name string, labels ...string) float64 {
	t.Helper()
	v, err := in.Metric(name, labels...)
	if err != nil {
		t.Fatalf("%s: %s: %v", in.Name, name, err)
	}
	return v
}

// SumMetric adds the samples of a metric in Prometheus text format.
func SumMetric(body []byte, name string, labels ...string) float64 {
	sum := 0.0
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(rest, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// LogBuffer collects a process's output; safe to read while it writes.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// StartMembers starts n members abacus-0.. at once, member i bound to
// 127.0.0.(i+1) on one port and reaching its peers by the local peer URL
// template, as the pods of a StatefulSet reach each other by their DNS
// names, and waits until every one is ready.
func StartMembers(t testing.TB, brokers string, n int, env map[string]string) []*Instance {
	t.Helper()
	port := FreePort(t)
	all := map[string]string{"ABACUS_PEER_URL_TEMPLATE": fmt.Sprintf("http://127.0.0.{{add .Ordinal 1}}:%d", port)}
	for k, v := range env {
		all[k] = v
	}
	var out []*Instance
	for i := range n {
		out = append(out, StartInstance(t, InstanceConfig{
			Name: fmt.Sprintf("abacus-%d", i), Brokers: brokers, Host: fmt.Sprintf("127.0.0.%d", i+1), Port: port, Env: all,
		}))
	}
	for _, in := range out {
		in.WaitReady(2 * time.Minute)
	}
	return out
}

// JSONLines decodes the output as JSON lines, one object per line; a line
// that is not JSON is an error naming it.
func (b *LogBuffer) JSONLines() ([]map[string]any, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, raw := range bytes.Split(b.buf.Bytes(), []byte("\n")) {
		if len(raw) == 0 {
			continue
		}
		var line map[string]any
		if err := json.Unmarshal(raw, &line); err != nil {
			return nil, fmt.Errorf("not JSON: %s", raw)
		}
		out = append(out, line)
	}
	return out, nil
}
