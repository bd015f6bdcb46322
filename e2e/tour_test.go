package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// The README's tour, as a newcomer types it: the binary with no settings
// but its addresses (an embedded broker), kcat in and out, curl.
func TestReadmeTour(t *testing.T) {
	kcat, brokerAddr, in, log := startTourBinary(t)
	produce := exec.Command(kcat, "-P", "-b", brokerAddr, "-t", "input-topic", "-K:", "-X", "partitioner=murmur2_random")
	produce.Stdin = strings.NewReader("foo:bar\nhello:world\nhello:universe\nfoo:baz\njohn:doe\n")
	if out, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		code, body, err := in.Get("/api/v1/stores/counts-store/keys/foo")
		if err == nil && (code != 200 || !strings.Contains(string(body), `"value":2`) || !strings.Contains(string(body), `"offset":2`)) {
			err = testkit.Errorf("foo: %d %s", code, body)
		}
		return err
	})
	code, body, err := in.Get("/api/v1/stores/counts-store/keys/foo")
	if err != nil || code != 200 || string(body) != `{"key":"foo","value":2,"partition":0,"served_by":"`+hostname(t)+`","position":{"partition":0,"offset":2}}`+"\n" {
		t.Errorf("curl foo: %d %q %v", code, body, err)
	}
	code, body, err = in.Get("/api/v1/stores/counts-store/keys/foo?after=0:1")
	if err != nil || code != 200 || string(body) != `{"key":"foo","value":2,"partition":0,"served_by":"`+hostname(t)+`","position":{"partition":0,"offset":2}}`+"\n" {
		t.Errorf("curl foo after 0:1: %d %q %v", code, body, err)
	}
	consume := exec.Command(kcat, "-C", "-b", brokerAddr, "-t", "counts-topic", "-e", "-q", "-f", "%k %s\n")
	out, err := consume.Output()
	if err != nil {
		t.Fatalf("kcat -C: %v", err)
	}
	last := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, " ")
		last[k] = v
	}
	if last["foo"] != "2" || last["hello"] != "2" || last["john"] != "1" || len(last) != 3 {
		t.Errorf("counts-topic last values %v, want foo 2, hello 2, john 1", last)
	}
	if !strings.Contains(log.String(), "EMBEDDED Kafka-protocol broker") {
		t.Errorf("the first log lines do not say loudly that the broker is embedded")
	}
}

// startTourBinary starts the binary as the README does: no settings but
// its addresses (an embedded broker) and env, in a directory of its own.
func startTourBinary(t *testing.T, env ...string) (kcat, brokerAddr string, in *testkit.Instance, log *testkit.LogBuffer) {
	t.Helper()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is not installed: .ci/run installs it (apt-get install kcat)")
	}
	brokerAddr = "127.0.0.1:" + itoa(testkit.FreePort(t))
	dir := t.TempDir()
	cmd := exec.Command(testkit.Binary(t))
	httpAddr := "127.0.0.1:" + itoa(testkit.FreePort(t))
	cmd.Env = append(append(testkit.InheritedEnv(false), "ABACUS_EMBEDDED_BROKER="+brokerAddr, "ABACUS_HTTP_ADDR="+httpAddr), env...)
	cmd.Dir = dir
	log = &testkit.LogBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Log(log.String())
		}
	})
	in = &testkit.Instance{URL: "http://" + httpAddr}
	testkit.Eventually(t, time.Minute, func() error {
		code, body, err := in.Get("/readyz")
		if err == nil && code != 200 {
			err = testkit.Errorf("readyz %d %s", code, body)
		}
		return err
	})
	return kcat, brokerAddr, in, log
}

// The README's windowed counts, as typed there: two records of foo from
// kcat are one window of one minute holding 2 (or two windows holding 1
// each, should the minute turn between them), one session holding 2, and
// the output topic's last record of foo's window says so.
func TestReadmeWindows(t *testing.T) {
	kcat, brokerAddr, in, _ := startTourBinary(t, "ABACUS_WINDOWS=clicks-1m=tumbling,size=1m;visits=session,size=30m")
	produce := exec.Command(kcat, "-P", "-b", brokerAddr, "-t", "input-topic", "-K:", "-X", "partitioner=murmur2_random")
	produce.Stdin = strings.NewReader("foo:bar\nfoo:baz\n")
	if out, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	var got keyWindows
	testkit.Eventually(t, 30*time.Second, func() error {
		code, body, err := in.GetJSON("/api/v1/stores/clicks-1m/keys/foo/windows", &got)
		sum := int64(0)
		for _, w := range got.Windows {
			sum += w.Value
		}
		if err == nil && (code != 200 || sum != 2) {
			err = testkit.Errorf("foo's windows: %d %s", code, body)
		}
		return err
	})
	if got.Key != "foo" || got.Partition != 0 || got.ServedBy != hostname(t) {
		t.Errorf("foo's windows: %+v", got)
	}
	for _, w := range got.Windows {
		if w.End-w.Start != 60_000 || w.Start%60_000 != 0 {
			t.Errorf("window %+v is not a minute aligned to the epoch", w)
		}
	}
	var page windowPage
	if code, body, err := in.GetJSON("/api/v1/stores/visits/windows?limit=10", &page); err != nil || code != 200 ||
		len(page.Items) != 1 || page.Items[0].Key != "foo" || page.Items[0].Value != 2 || page.NextCursor != "" {
		t.Errorf("visits: %d %s %v", code, body, err)
	}
	out, err := exec.Command(kcat, "-C", "-b", brokerAddr, "-t", "clicks-1m-topic", "-e", "-q", "-f", "%k %s\n").Output()
	if err != nil {
		t.Fatalf("kcat -C: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	w := got.Windows[len(got.Windows)-1]
	if want := fmt.Sprintf(`foo {"key":"foo","start":%d,"end":%d,"value":%d}`, w.Start, w.End, w.Value); last != want {
		t.Errorf("clicks-1m-topic ends with %q; want %q", last, want)
	}
}

func hostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
