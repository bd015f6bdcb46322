package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// Members serving HTTPS forward lookups and subscriptions to each other
// over HTTPS, verifying each other with ABACUS_TLS_CA_FILE: curl with the
// test CA gets the owner's exact answer through another member, curl
// without it is refused, and a member given another CA cannot reach its
// peers (their certificates do not verify) and says so.
func TestTLSBetweenMembers(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	ca := testkit.NewTestCA(t, "127.0.0.1", "127.0.0.2", "127.0.0.3")
	other := testkit.NewTestCA(t)
	port := testkit.FreePort(t)
	var members []*testkit.Instance
	for i, caFile := range []string{ca.CAFile, ca.CAFile, other.CAFile} {
		members = append(members, testkit.StartInstance(t, testkit.InstanceConfig{
			Name: fmt.Sprintf("abacus-%d", i), Brokers: b.Addr(), Host: fmt.Sprintf("127.0.0.%d", i+1), Port: port, TLS: ca.Client,
			Env: map[string]string{
				"ABACUS_TLS_CERT_FILE": ca.CertFile, "ABACUS_TLS_KEY_FILE": ca.KeyFile, "ABACUS_TLS_CA_FILE": caFile,
				"ABACUS_PEER_URL_TEMPLATE": fmt.Sprintf("https://127.0.0.{{add .Ordinal 1}}:%d", port),
			},
		}))
	}
	for _, in := range members {
		in.WaitReady(2 * time.Minute)
	}
	w := skewed(41, 2_000, 60)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
	waitCounts(t, time.Minute, members[:1], w.truth, false)

	// A key abacus-1 owns, asked of abacus-0; one abacus-0 owns, asked
	// of abacus-2.
	owned := map[string]string{}
	for key := range w.truth {
		kc, code, err := members[0].Count(storeName, key)
		if err != nil || code != 200 {
			t.Fatalf("lookup %s at abacus-0: %d %v", key, code, err)
		}
		owned[kc.ServedBy] = key
	}
	forwarded, fromOther := owned["abacus-1"], owned["abacus-0"]
	if forwarded == "" || fromOther == "" {
		t.Fatalf("no key owned by abacus-1 or abacus-0 among %d keys: %v", len(w.truth), owned)
	}
	lookup := fmt.Sprintf("https://127.0.0.1:%d/api/v1/stores/%s/keys/%s", port, storeName, url.PathEscape(forwarded))
	out, err := exec.Command("curl", "-sS", "--cacert", ca.CAFile, lookup).CombinedOutput()
	var kc testkit.KeyCount
	if err == nil {
		err = json.Unmarshal(out, &kc)
	}
	if err != nil || kc.Key != forwarded || kc.Value != w.truth[forwarded] || kc.ServedBy != "abacus-1" {
		t.Errorf("curl --cacert %s: %v %s; want the count %d served by abacus-1", lookup, err, out, w.truth[forwarded])
	}
	out, err = exec.Command("curl", "-sS", lookup).CombinedOutput()
	if code := exitCode(err); code != 60 { // curl: the peer's certificate did not verify
		t.Errorf("curl without the CA: exit %d %s; want 60", code, out)
	}

	subscribe := fmt.Sprintf("https://127.0.0.1:%d/api/v1/stores/%s/subscribe?key=%s", port, storeName, url.QueryEscape(forwarded))
	event, err := curlFirstEvent("--cacert", ca.CAFile, subscribe)
	var current testkit.KeyCount
	if err == nil {
		err = json.Unmarshal([]byte(strings.TrimPrefix(event, "data: ")), &current)
	}
	if err != nil || current.Key != forwarded || current.Value != w.truth[forwarded] {
		t.Errorf("forwarded subscription with the CA: %v %q; want the count %d", err, event, w.truth[forwarded])
	}
	out, err = exec.Command("curl", "-sSN", "--max-time", "10", subscribe).CombinedOutput()
	if code := exitCode(err); code != 60 {
		t.Errorf("subscription without the CA: exit %d %s; want 60", code, out)
	}

	// abacus-2 verifies its peers with another CA: it cannot forward.
	ask := fmt.Sprintf("https://127.0.0.3:%d/api/v1/stores/%s/keys/%s", port, storeName, url.PathEscape(fromOther))
	out, err = exec.Command("curl", "-sS", "--cacert", ca.CAFile, "-w", "\n%{http_code}", ask).CombinedOutput()
	if err != nil || !strings.HasSuffix(string(out), "\n503") || !strings.Contains(string(out), `"code":"owner_unreachable"`) ||
		!strings.Contains(string(out), "certificate signed by unknown authority") {
		t.Errorf("a lookup forwarded by a member with another CA: %v %s; want 503 owner_unreachable naming the certificate", err, out)
	}
}

// curlFirstEvent runs curl on a stream with args and returns the first data
// line it prints.
func curlFirstEvent(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", append([]string{"-sSN"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", err
	}
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if line := lines.Text(); strings.HasPrefix(line, "data: ") {
			cancel()
			_ = cmd.Wait()
			return line, nil
		}
	}
	cancel()
	err = cmd.Wait() // after every read of stdout, and before stderr is read
	return "", fmt.Errorf("no event (%v, %v): %s", lines.Err(), err, stderr.String())
}

// exitCode is a command's exit code, -1 if it did not run to an exit.
func exitCode(err error) int {
	var exit *exec.ExitError
	if err == nil {
		return 0
	}
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	return -1
}
