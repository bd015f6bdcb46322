package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// trio starts three members bound to 127.0.0.1, .2 and .3 on one port, as
// three pods of a StatefulSet are reached by their DNS names.
func trio(t *testing.T, brokers string, env map[string]string) []*testkit.Instance {
	t.Helper()
	out := testkit.StartMembers(t, brokers, 3, env)
	// Every member's view names three members owning all partitions.
	for _, in := range out {
		testkit.Eventually(t, time.Minute, func() error {
			v, _, _ := in.Cluster()
			owners := 0
			for _, m := range v.Members {
				owners += len(m.Partitions)
			}
			if len(v.Members) != 3 || owners != int(v.Partitions) || v.Partitions == 0 {
				return fmt.Errorf("%s sees %+v", in.Name, v)
			}
			return nil
		})
	}
	return out
}

// Acceptance 1: every member answers every key exactly; about two thirds
// of the answers come from another member.
func TestLookupsAcrossPods(t *testing.T) {
	b := testkit.StartBroker(t, 6)
	pods := trio(t, b.Addr(), map[string]string{"ABACUS_PARTITIONS": "6"})
	w := skewed(20, 20_000, 2_000)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
	waitCounts(t, 2*time.Minute, pods[:1], w.truth, false)

	asked, forwarded := 0, 0
	for key, want := range w.truth {
		for _, in := range pods {
			kc, code, err := in.Count(storeName, key)
			if err != nil || code != 200 || kc.Value != want || kc.Key != key {
				t.Fatalf("%s answered %q with %d %+v %v; want %d", in.Name, key, code, kc, err, want)
			}
			asked++
			if kc.ServedBy != in.Name {
				forwarded++
			}
		}
	}
	share := float64(forwarded) / float64(asked)
	t.Logf("%d lookups, %d forwarded (%.2f)", asked, forwarded, share)
	if share < 0.5 || share > 0.8 {
		t.Errorf("forwarded share %.2f, want about two thirds", share)
	}
	// ?local=true answers from the asked member only.
	for key := range w.truth {
		for _, in := range pods {
			code, body, err := in.Get("/api/v1/stores/counts-store/keys/" + url.PathEscape(key) + "?local=true")
			if err != nil {
				t.Fatal(err)
			}
			if code == 200 && !strings.Contains(string(body), `"served_by":"`+in.Name+`"`) {
				t.Fatalf("local answer of %s served by another: %s", in.Name, body)
			}
			if code != 200 && code != 503 {
				t.Fatalf("local answer %d %s", code, body)
			}
		}
		break
	}
	// Metadata names the member that serves the key.
	for key := range w.truth {
		kc, _, _ := pods[0].Count(storeName, key)
		code, body, err := pods[1].Get("/api/v1/stores/counts-store/keys/" + url.PathEscape(key) + "/metadata")
		var md struct {
			Partition int32  `json:"partition"`
			Owner     string `json:"owner"`
			URL       string `json:"url"`
		}
		if err == nil {
			err = json.Unmarshal(body, &md)
		}
		if code != 200 || err != nil || md.Owner != kc.ServedBy || md.Partition != kc.Partition || !strings.HasPrefix(md.URL, "http://127.0.0.") {
			t.Errorf("metadata %d %s %v; lookup said %+v", code, body, err, kc)
		}
		break
	}
}

// Acceptance 2: a scan returns exactly the keys with the prefix, each
// once, in order, through pages of 7.
func TestScanAcrossPods(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	pods := trio(t, b.Addr(), nil)
	var records []testkit.Record
	truth := map[string]int64{}
	var want []string
	for i := range 200 {
		key := fmt.Sprintf("us-%03d", i)
		if i%3 == 0 {
			key = fmt.Sprintf("uk-%03d", i)
		} else {
			want = append(want, key)
		}
		for range i%4 + 1 {
			records = append(records, testkit.Record{Key: []byte(key), Value: []byte("x")})
			truth[key]++
		}
	}
	records = append(records, testkit.Record{Key: []byte("us"), Value: []byte("x")}, testkit.Record{Key: []byte("ut-1"), Value: []byte("x")})
	truth["us"], truth["ut-1"] = 1, 1
	testkit.Produce(t, b.Addr(), input, "murmur2_random", records)
	waitCounts(t, 2*time.Minute, pods[:1], truth, false)

	for _, in := range pods {
		var got []string
		testkit.ScanPages(t, in.URL+"/api/v1/stores/counts-store/keys?prefix=us-&limit=7", 100, func(_ int, _ *http.Response, _ []byte, page testkit.KeyPage) {
			if len(page.Items) > 7 || (page.NextCursor != "" && len(page.Items) != 7) {
				t.Fatalf("page of %d items with cursor %q", len(page.Items), page.NextCursor)
			}
			for _, it := range page.Items {
				if it.Value != truth[it.Key] {
					t.Errorf("scan: %s = %d, want %d", it.Key, it.Value, truth[it.Key])
				}
				got = append(got, it.Key)
			}
		})
		if !slices.Equal(got, want) {
			t.Errorf("%s scanned %d keys %v..., want %d", in.Name, len(got), got[:min(5, len(got))], len(want))
		}
	}
	// from/to bound the keys.
	code, body, _ := pods[2].Get("/api/v1/stores/counts-store/keys?from=us-010&to=us-014")
	if code != 200 || string(body) != `{"items":[{"key":"us-010","value":3,"partition":`+partitionIn(t, pods, "us-010")+`},{"key":"us-011","value":4,"partition":`+partitionIn(t, pods, "us-011")+`},{"key":"us-013","value":2,"partition":`+partitionIn(t, pods, "us-013")+`}]}`+"\n" {
		t.Errorf("from/to scan: %d %s", code, body)
	}
}

func partitionIn(t *testing.T, pods []*testkit.Instance, key string) string {
	kc, _, err := pods[0].Count(storeName, key)
	if err != nil {
		t.Fatal(err)
	}
	return itoa(int(kc.Partition))
}

// Acceptance 3: kill -9 a member. Until its partitions are moved and
// restored every answer is the exact count or a 503; then every key
// answers exactly from the survivors.
func TestKillOwnerDuringLookups(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	pods := trio(t, b.Addr(), nil)
	w := skewed(21, 10_000, 600)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
	waitCounts(t, 2*time.Minute, pods[:1], w.truth, false)
	keys := make([]string, 0, len(w.truth))
	for k := range w.truth {
		keys = append(keys, k)
	}
	pods[2].Kill()
	checkStatusShowsKilled(t, pods[0], pods[2].Name)
	survivors := pods[:2]
	unavailable, exact := 0, 0
	r := rand.New(rand.NewPCG(1, 2))
	testkit.Eventually(t, 2*time.Minute, func() error {
		// A sweep of every key through both survivors: all exact ends it.
		bad := 0
		for _, key := range keys {
			in := survivors[r.IntN(2)]
			kc, code, err := in.Count(storeName, key)
			switch {
			case err != nil:
				t.Fatalf("%s: %v (a hang or a broken connection is never an answer)", in.Name, err)
			case code == 503:
				unavailable++
				bad++
			case code == 200 && kc.Value == w.truth[key]:
				exact++
			default:
				t.Fatalf("%s answered %q with %d %+v; want %d or a 503", in.Name, key, code, kc, w.truth[key])
			}
		}
		if bad > 0 {
			return fmt.Errorf("%d keys still unavailable", bad)
		}
		return nil
	})
	t.Logf("during failover: %d answers 503, %d exact", unavailable, exact)
	waitCounts(t, 30*time.Second, survivors, w.truth, false)
}

// checkStatusShowsKilled: right after a member's process is killed, while
// the group (and so the view) still lists it, /api/v1/cluster/status
// shows it unreachable, and the other members reachable.
func checkStatusShowsKilled(t *testing.T, asked *testkit.Instance, killed string) {
	t.Helper()
	began := time.Now()
	code, body, err := asked.Get("/api/v1/cluster/status")
	took := time.Since(began)
	var status struct {
		Members []struct {
			Member    string `json:"member"`
			Reachable bool   `json:"reachable"`
			Error     string `json:"error"`
		} `json:"members"`
	}
	if err != nil || code != 200 || json.Unmarshal(body, &status) != nil {
		t.Fatalf("cluster status: %d %s %v", code, body, err)
	}
	seen := false
	for _, m := range status.Members {
		switch {
		case m.Member == killed:
			seen = true
			if m.Reachable || m.Error == "" {
				t.Errorf("the killed member %s: reachable %v, error %q; want unreachable, with why", killed, m.Reachable, m.Error)
			}
		case !m.Reachable:
			t.Errorf("member %s: unreachable (%s); want reachable", m.Member, m.Error)
		}
	}
	if !seen {
		t.Errorf("cluster status %s does not list %s, which the group still lists right after the kill", body, killed)
	}
	if took >= time.Second {
		t.Errorf("cluster status took %s; want it at once (a refused connection is final)", took)
	}
}

// Acceptance 5: bad input is a 4xx with a JSON error; the member goes on.
func TestBadQueryInput(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(),
		Env: map[string]string{"ABACUS_PEER_URL_TEMPLATE": "http://127.0.0.1:1"}})
	in.WaitReady(time.Minute)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", []testkit.Record{{Key: []byte("foo"), Value: []byte("x")}})
	waitCounts(t, time.Minute, []*testkit.Instance{in}, map[string]int64{"foo": 1}, false)
	long := strings.Repeat("k", 64<<10)
	for _, tc := range []struct {
		path string
		code int
		err  string
	}{
		{"/api/v1/stores/counts-store/keys/", 400, "bad_key"},
		{"/api/v1/stores/counts-store/keys/" + long, 400, "bad_key"},
		{"/api/v1/stores/counts-store/keys/%C3%28", 400, "bad_key"},
		{"/api/v1/stores/counts-store/keys?prefix=%zz", 400, "bad_query"},
		{"/api/v1/stores/nope/keys/foo", 404, "unknown_store"},
		{"/api/v1/stores/nope/keys", 404, "unknown_store"},
		{"/api/v1/stores/counts-store/keys?cursor=Zm9vYmFyYmF6cXV4cXV1eHh4eHh4eA", 400, "bad_cursor"},
		{"/api/v1/stores/counts-store/keys?cursor=!!", 400, "bad_cursor"},
		{"/api/v1/stores/counts-store/keys?limit=0", 400, "bad_parameter"},
		{"/api/v1/stores/counts-store/keys?limit=1001", 400, "bad_parameter"},
		{"/api/v1/stores/counts-store/keys?limit=ten", 400, "bad_parameter"},
		{"/api/v1/stores/counts-store/keys?from=b&to=a", 400, "bad_parameter"},
		{"/api/v1/stores/counts-store/keys/foo?local=maybe", 400, "bad_parameter"},
		{"/api/v1/nothing-here", 404, "not_found"},
	} {
		code, body, err := in.Get(tc.path)
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err == nil {
			err = json.Unmarshal(body, &e)
		}
		if err != nil || code != tc.code || e.Error.Code != tc.err || e.Error.Message == "" {
			t.Errorf("GET %.80s: %d %.200s %v; want %d with error code %s", tc.path, code, body, err, tc.code, tc.err)
		}
	}
	// Broken percent-encoding in the path never reaches a handler: Go's
	// server answers 400 itself.
	conn, err := net.Dial("tcp", strings.TrimPrefix(in.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /api/v1/stores/counts-store/keys/%%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	status, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if !strings.HasPrefix(status, "HTTP/1.1 400") {
		t.Errorf("broken escape in path: %q", status)
	}
	if kc, code, err := in.Count(storeName, "foo"); err != nil || code != 200 || kc.Value != 1 {
		t.Errorf("after bad input: %d %+v %v", code, kc, err)
	}
}

// Acceptance 6: keys produced by kcat's own default partitioner are found
// with ABACUS_PARTITIONER=crc32 (murmur2, the default, is what every other
// test produces with).
func TestCRC32PartitionerWithKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is not installed: .ci/run installs it")
	}
	b := testkit.StartBroker(t, 4)
	pods := trio(t, b.Addr(), map[string]string{"ABACUS_PARTITIONER": "crc32"})
	var lines strings.Builder
	truth := map[string]int64{}
	for i := range 300 {
		key := fmt.Sprintf("kcat-key-%d", i%100)
		fmt.Fprintf(&lines, "%s:v%d\n", key, i)
		truth[key]++
	}
	produce := exec.Command(kcat, "-P", "-b", b.Addr(), "-t", input, "-K:")
	produce.Stdin = strings.NewReader(lines.String())
	if out, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("kcat: %v %s", err, out)
	}
	waitCounts(t, time.Minute, pods[:1], truth, false)
	for _, in := range pods {
		for key, want := range truth {
			kc, code, err := in.Count(storeName, key)
			if err != nil || code != 200 || kc.Value != want {
				t.Fatalf("%s: %q = %d %+v %v, want %d", in.Name, key, code, kc, err, want)
			}
		}
		if got := metric(t, in, "abacus_partitioner_mismatch_total"); got != 0 {
			t.Errorf("%s counted %v partitioner mismatches", in.Name, got)
		}
	}
}
