package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/testkit"
)

// statusBody is what a client reads of /api/v1/cluster/status.
type statusBody struct {
	Self         string
	Partitions   int32
	RefreshedAt  string  `json:"refreshed_at"`
	AgeSeconds   float64 `json:"age_seconds"`
	Members      []statusRow
	PartitionMap []struct {
		Partition int32
		Owner     string
		Standbys  []string
	} `json:"partition_map"`
}

type statusRow struct {
	Member, URL, Error string
	Reachable          bool
	State, Version     string
	Reason             string
	ActiveTasks        []abacus.TaskStatus `json:"active_tasks"`
	RestoringTasks     []abacus.TaskStatus `json:"restoring_tasks"`
	StandbyTasks       []abacus.TaskStatus `json:"standby_tasks"`
	Lag                *int64
	RecordsProcessed   *int64 `json:"records_processed"`
}

// fetchStatus asks base for the group's status, checks the answer against
// the spec, and returns it with how long it took.
func fetchStatus(t *testing.T, base string, header http.Header) (statusBody, time.Duration) {
	t.Helper()
	began := time.Now()
	resp, body := testkit.MustFetch(t, base+"/api/v1/cluster/status", header)
	took := time.Since(began)
	if resp.StatusCode != 200 {
		t.Fatalf("cluster status: %d %s", resp.StatusCode, body)
	}
	if _, err := loadSpec(t).validate(resp.Request, "", resp.StatusCode, resp.Header, body); err != nil {
		t.Errorf("cluster status does not match openapi.yaml: %v\n%s", err, body)
	}
	var out statusBody
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out, took
}

func TestClusterStatus(t *testing.T) {
	c := healthy()
	c.health.tasks = append(c.health.tasks, abacus.TaskStatus{Partition: 2, State: "restoring", Checkpoint: 10, RestoreDone: 10, RestoreTotal: 500})
	base := c.start(t)
	got, _ := fetchStatus(t, base, nil)
	if got.Self != "abacus-0" || got.Partitions != 2 || got.RefreshedAt == "" || got.AgeSeconds < 2 {
		t.Errorf("view: self %q, %d partitions, refreshed %q, age %v; want abacus-0's of 2 partitions read 2 s ago",
			got.Self, got.Partitions, got.RefreshedAt, got.AgeSeconds)
	}
	if len(got.Members) != 2 {
		t.Fatalf("members %+v; want both", got.Members)
	}
	for i, row := range got.Members {
		want := c.router.members[i]
		// Both fake members share the health and the sample metrics.
		if row.Member != want.Name || row.URL != want.URL || !row.Reachable || row.Error != "" ||
			row.State != "RUNNING" || row.Version != "test" || row.Lag == nil || *row.Lag != 4 ||
			row.RecordsProcessed == nil || *row.RecordsProcessed != 5 {
			t.Errorf("row %d: %+v; want %s reachable, RUNNING, version test, lag 4, 5 records", i, row, want.Name)
		}
		if !reflect.DeepEqual(row.ActiveTasks, c.health.tasks[:1]) || !reflect.DeepEqual(row.RestoringTasks, c.health.tasks[1:]) ||
			!reflect.DeepEqual(row.StandbyTasks, c.health.standbys) {
			t.Errorf("row %d: tasks %+v, %+v, %+v; want the active, the restoring (with its progress) and the standby",
				i, row.ActiveTasks, row.RestoringTasks, row.StandbyTasks)
		}
	}
	places, _ := json.Marshal(got.PartitionMap)
	if want := `[{"Partition":0,"Owner":"abacus-0","Standbys":["abacus-1"]},{"Partition":1,"Owner":"abacus-1","Standbys":["abacus-0"]}]`; string(places) != want {
		t.Errorf("partition map %s; want %s", places, want)
	}
}

// A member whose process is gone refuses the connection: it is shown
// unreachable at once, while the view (the group) still lists it.
func TestClusterStatusMemberDown(t *testing.T) {
	c := healthy()
	c.peerDown = true
	base := c.start(t)
	got, took := fetchStatus(t, base, nil)
	if len(got.Members) != 2 || !got.Members[0].Reachable {
		t.Fatalf("members %+v; want both, abacus-0 reachable", got.Members)
	}
	down := got.Members[1]
	if down.Member != "abacus-1" || down.Reachable || !strings.HasPrefix(down.Error, "unreachable: ") || down.State != "" || down.Lag != nil || down.ActiveTasks != nil {
		t.Errorf("the member down: %+v; want abacus-1 unreachable, with why, and no figures", down)
	}
	if took >= time.Second {
		t.Errorf("the answer took %s; want it at once, not after the 1 s deadline (a refused connection is final)", took)
	}
	if got.PartitionMap[1].Owner != "abacus-1" {
		t.Errorf("partition 1: owner %q; want abacus-1, as the view still says", got.PartitionMap[1].Owner)
	}
}

// A member that does not answer holds the answer back for the deadline
// only, and is reported unreachable.
func TestClusterStatusMemberHung(t *testing.T) {
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hung.Close)
	c := healthy()
	base := c.start(t)
	c.router.members[1].URL = hung.URL
	got, took := fetchStatus(t, base, nil)
	if row := got.Members[1]; row.Reachable || !strings.Contains(row.Error, "no answer within 1s") {
		t.Errorf("the hung member: %+v; want unreachable, no answer within 1s", row)
	}
	if took < 900*time.Millisecond || took > 1900*time.Millisecond {
		t.Errorf("the answer took %s; want about the 1 s deadline", took)
	}
}

// A URL that leads to another member (a wrong ABACUS_PEER_URL_TEMPLATE)
// is not taken for the member the view names.
func TestClusterStatusWrongURL(t *testing.T) {
	c := healthy()
	base := c.start(t)
	c.router.members[1].URL = base // abacus-0's
	got, _ := fetchStatus(t, base, nil)
	if row := got.Members[1]; row.Reachable || !strings.Contains(row.Error, `answers as member "abacus-0"`) {
		t.Errorf("abacus-1 at abacus-0's URL: %+v; want unreachable, naming the member that answered", row)
	}
}

// The other members are asked with the caller's credentials: a caller
// whose credentials they refuse sees them unreachable, with why.
func TestClusterStatusPassesCredentialsOn(t *testing.T) {
	c := healthy()
	withAuth("tok", "", false)(c)
	c.peerConfig = func(cfg *api.Config) { cfg.AuthToken = "other" }
	base := c.start(t)
	got, _ := fetchStatus(t, base, http.Header{"Authorization": {"Bearer tok"}})
	if row := got.Members[1]; row.Reachable || !strings.Contains(row.Error, "401 unauthorized") {
		t.Errorf("abacus-1 with other credentials: %+v; want unreachable, 401 unauthorized", row)
	}
	c.peerConfig = func(cfg *api.Config) { cfg.AuthToken = "tok" }
	base = c.start(t)
	got, _ = fetchStatus(t, base, http.Header{"Authorization": {"Bearer tok"}})
	if row := got.Members[1]; !row.Reachable {
		t.Errorf("abacus-1 with the same credentials: %+v; want reachable", row)
	}
}
