package api

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
)

// Snapshots serves this member's copies of task stores to a member that
// takes a task over without a copy of its own (docs/state.md, "Peer
// snapshots"): an active task's, a standby's, or a revoked task's state
// kept on disk. Its methods may be called from many goroutines at once.
type Snapshots interface {
	// Checkpoint is the checkpoint of this member's copy of the
	// partition's store; found is false when it holds none with one.
	Checkpoint(partition int32) (checkpoint int64, found bool, err error)
	// WriteSnapshot writes the copy of the partition's store to w, and
	// returns the bytes written. It fails with ErrNoCopy, having written
	// nothing, when this member holds no copy with a checkpoint.
	WriteSnapshot(partition int32, w io.Writer) (bytes int64, err error)
}

// ErrNoCopy is Snapshots.WriteSnapshot's error for a partition this
// member holds no copy of.
var ErrNoCopy = errors.New("no copy of the partition here")

// Paths of the calls between members, echo-style.
const (
	PathTaskCheckpoint = "/api/v1/internal/tasks/:partition/checkpoint"
	PathTaskSnapshot   = "/api/v1/internal/tasks/:partition/snapshot"
)

// TaskCheckpointPath and TaskSnapshotPath are the paths a member asks
// another for a partition's checkpoint and snapshot.
func TaskCheckpointPath(partition int32) string {
	return "/api/v1/internal/tasks/" + strconv.Itoa(int(partition)) + "/checkpoint"
}

func TaskSnapshotPath(partition int32) string {
	return "/api/v1/internal/tasks/" + strconv.Itoa(int(partition)) + "/snapshot"
}

// SnapshotContentType is the content type of a snapshot answer.
const SnapshotContentType = "application/octet-stream"

// TaskCheckpoint is the body of a checkpoint answer.
type TaskCheckpoint struct {
	Partition  int32  `json:"partition"`
	Checkpoint int64  `json:"checkpoint"`
	Member     string `json:"member"`
}

// PeerTransport is the transport of calls between members: lookups and
// scans forwarded to their owner, and snapshots.
func PeerTransport(peerTLS *tls.Config) *http.Transport { return forwardTransport(peerTLS) }

// PeerAuthorization is the Authorization header of a member's own calls
// to another member (a forwarded lookup passes on its client's instead):
// the bearer token, or else the basic credentials, that every member is
// configured with and so accepts; empty without auth.
func PeerAuthorization(token, basic string) string {
	switch {
	case token != "":
		return "Bearer " + token
	case basic != "":
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(basic))
	}
	return ""
}

// pathPartition is the partition in the path.
func pathPartition(c echo.Context) (int32, error) {
	raw := c.Param("partition")
	p, err := strconv.ParseInt(raw, 10, 32)
	if err != nil || p < 0 {
		return 0, fail(http.StatusBadRequest, "bad_parameter", "partition must be a partition number (0 or more), not %q", raw)
	}
	return int32(p), nil
}

func (s *Server) noCopy(p int32) *apiError {
	return fail(http.StatusNotFound, "no_copy", "%s holds no copy of partition %d with a checkpoint", s.cfg.Instance, p)
}

// taskCheckpoint answers the checkpoint of this member's copy of a
// partition: a member about to take the task over asks every other for
// theirs, and then the one with the highest for its snapshot.
func (s *Server) taskCheckpoint(c echo.Context) error {
	p, err := pathPartition(c)
	if err != nil {
		return err
	}
	if s.cfg.Snapshots == nil {
		return s.noCopy(p)
	}
	cp, found, err := s.cfg.Snapshots.Checkpoint(p)
	switch {
	case err != nil:
		return fmt.Errorf("read the checkpoint of partition %d: %w", p, err)
	case !found:
		return s.noCopy(p)
	}
	return c.JSON(http.StatusOK, TaskCheckpoint{Partition: p, Checkpoint: cp, Member: s.cfg.Instance})
}

// taskSnapshot streams this member's copy of a partition. The answer is
// sent as the store is read, without a length: a snapshot that fails
// once it has begun just ends, without the trailer the reader verifies
// it by, so the reader refuses it as cut off.
func (s *Server) taskSnapshot(c echo.Context) error {
	p, err := pathPartition(c)
	if err != nil {
		return err
	}
	if s.cfg.Snapshots == nil {
		return s.noCopy(p)
	}
	began := time.Now()
	w := &snapshotBody{c: c, rc: http.NewResponseController(c.Response()), timeout: s.cfg.StreamWriteTimeout}
	n, err := s.cfg.Snapshots.WriteSnapshot(p, w)
	switch {
	case err == nil:
		s.metrics.snapshots.WithLabelValues("ok").Inc()
		s.metrics.snapshotBytes.Add(float64(n))
		s.cfg.Logger.Info("sent a snapshot to a peer", "partition", p, "peer", c.Request().Header.Get(HopHeader),
			"bytes", n, "took", time.Since(began).Round(time.Millisecond))
		return nil
	case !w.started && errors.Is(err, ErrNoCopy):
		return s.noCopy(p)
	}
	s.metrics.snapshots.WithLabelValues("failed").Inc()
	if !w.started {
		return fmt.Errorf("snapshot of partition %d: %w", p, err)
	}
	s.cfg.Logger.Warn("a snapshot failed after it began: the peer gets it cut off", "partition", p,
		"peer", c.Request().Header.Get(HopHeader), "error", err)
	return nil
}

// snapshotBody is a snapshot answer's body: it sends the status and
// headers with the first bytes (so that a snapshot that fails before any
// can still answer with an error), and gives every write the write
// timeout, so that a peer that stops reading does not hold the store's
// read transaction open.
type snapshotBody struct {
	c       echo.Context
	rc      *http.ResponseController
	timeout time.Duration
	started bool
}

func (b *snapshotBody) Write(p []byte) (int, error) {
	resp := b.c.Response()
	if !b.started {
		b.started = true
		resp.Header().Set(echo.HeaderContentType, SnapshotContentType)
		resp.Header().Set("Cache-Control", "no-store")
		resp.WriteHeader(http.StatusOK)
	}
	// A ResponseWriter without deadlines (a test recorder) just has none.
	_ = b.rc.SetWriteDeadline(time.Now().Add(b.timeout))
	return resp.Write(p)
}
