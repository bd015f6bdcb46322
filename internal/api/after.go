package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/labstack/echo/v4"
)

// Read-your-writes lookups (?after=P:O): the answer waits until the
// owner's durable position on input partition P is past offset O, so that
// it includes the record a producer's delivery report placed there.
// docs/queries.md, "Consistency".

// PositionHeader says, on a lookup with after, the position the answer
// reflects (or had reached, on 504 not_yet): "partition:offset".
const PositionHeader = "Abacus-Position"

// Waits of a read-your-writes lookup: the default and the most a caller
// may ask for with ?wait.
const (
	DefaultAfterWait = 5 * time.Second
	MaxAfterWait     = 30 * time.Second
)

// Position is where an answer stands on its input partition: every
// record below Offset is counted in it.
type Position struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// afterParams parses ?after=P:O and ?wait; ok is false without after.
func afterParams(c echo.Context) (after Position, wait time.Duration, ok bool, err error) {
	params, err := parseQuery(c)
	if err != nil {
		return Position{}, 0, false, err
	}
	v := params.Get("after")
	if v == "" {
		if params.Get("wait") != "" {
			return Position{}, 0, false, fail(http.StatusBadRequest, "bad_parameter", "wait is for lookups with after")
		}
		return Position{}, 0, false, nil
	}
	ps, os, found := strings.Cut(v, ":")
	p, perr := strconv.ParseInt(ps, 10, 32)
	o, oerr := strconv.ParseInt(os, 10, 64)
	if !found || perr != nil || oerr != nil || p < 0 || o < 0 {
		return Position{}, 0, false, fail(http.StatusBadRequest, "bad_parameter", "after must be partition:offset of a produced record, such as 3:1234, not %q", v)
	}
	wait = DefaultAfterWait
	if w := params.Get("wait"); w != "" {
		if wait, err = time.ParseDuration(w); err != nil || wait < 0 || wait > MaxAfterWait {
			return Position{}, 0, false, fail(http.StatusBadRequest, "bad_parameter", "wait must be a duration from 0s to %s, such as 2s, not %q", MaxAfterWait, w)
		}
	}
	return Position{Partition: int32(p), Offset: o}, wait, true, nil
}

// getKeyAfter answers a lookup with after=P:O once the owner has counted
// the record at P:O (and every record before it on P), waiting up to
// wait; a member that does not own the key forwards the request once,
// with a deadline that covers the wait.
func (s *Server) getKeyAfter(c echo.Context, store, key string, after Position, wait time.Duration, local bool) error {
	if store != s.storeName() {
		return s.unknownStore(store)
	}
	if s.cfg.Router == nil {
		return unavailable("starting", "no view of the group yet; retry shortly")
	}
	p, err := s.cfg.Router.PartitionOf([]byte(key))
	if err != nil {
		return unavailable("starting", "%v; retry shortly", err)
	}
	if p != after.Partition {
		return fail(http.StatusBadRequest, "bad_parameter", "after names partition %d, but key %q is in partition %d", after.Partition, key, p)
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), wait)
	defer cancel()
	pos, err := s.cfg.Counts.WaitPosition(ctx, p, after.Offset)
	switch {
	case errors.Is(err, abacus.ErrNotOwned):
		if local || forwarded(c) {
			s.refresh()
			return unavailable("not_owner", "partition %d of key %q is not owned by %s; retry shortly", p, key, s.cfg.Instance)
		}
		return s.forwardWaiting(c, p, wait)
	case errors.Is(err, abacus.ErrNotYet):
		c.Response().Header().Set(PositionHeader, fmt.Sprintf("%d:%d", p, pos))
		return fail(http.StatusGatewayTimeout, "not_yet", "partition %d of key %q is counted up to offset %d, not past %d, after %s; retry, or wait longer", p, key, pos, after.Offset, wait)
	case errors.Is(err, abacus.ErrHandingOver):
		return unavailable("moving", "%s is handing partition %d of key %q over to another member; retry shortly", s.cfg.Instance, p, key)
	case err != nil:
		return fmt.Errorf("wait for position: %w", err)
	}
	count, found, err := s.cfg.Counts.Get(store, []byte(key))
	if err != nil {
		return unavailable("moving", "partition %d of key %q: %v; retry shortly", p, key, err)
	}
	c.Response().Header().Set(PositionHeader, fmt.Sprintf("%d:%d", p, pos))
	if !found {
		return fail(http.StatusNotFound, "key_not_found", "key %q has no count in store %q", key, store)
	}
	count.Key, count.ServedBy, count.Position = key, s.cfg.Instance, &Position{Partition: p, Offset: pos}
	return c.JSON(http.StatusOK, count)
}

// forwardWaiting relays a lookup that waits to the owner of partition p,
// allowing for the wait on top of the forward timeout.
func (s *Server) forwardWaiting(c echo.Context, p int32, wait time.Duration) error {
	return s.forwardWith(c, p, s.waitClient, wait+s.cfg.ForwardTimeout)
}
