package abacus

import (
	"errors"
	"strconv"
)

// Errors a reader of this member's counts branches on. The HTTP API
// answers each with its own status and message; the texts here show only
// where one is passed on unmapped.
var (
	// ErrUnknownStore: no store by that name.
	ErrUnknownStore = errors.New("unknown store")
	// ErrNotOwned: the key's partition is not a task of this member.
	ErrNotOwned = errors.New("partition owned by another instance")
	// ErrRestoring: the key's task is here but still restoring.
	ErrRestoring = errors.New("partition is restoring")
	// ErrUnconfirmed: the key's task is here, but this member has been out
	// of reach of the group coordinator long enough that the group may
	// have given the partition to another member.
	ErrUnconfirmed = errors.New("partition ownership unconfirmed")
	// ErrHandingOver: the group has asked this member to give the key's
	// task up, and it is committing its last work for the next owner.
	ErrHandingOver = errors.New("partition being handed over")
	// ErrNotYet: a read that waits for a position gave up before the
	// owner's durable position passed it.
	ErrNotYet = errors.New("position not reached yet")
)

// StaleError: the only copy of the key's task here lags further behind
// its changelog than the reader accepts.
type StaleError struct {
	// Lag is the copy's lag: changelog records not applied yet.
	Lag int64
}

func (e *StaleError) Error() string {
	return "the copy here lags " + strconv.FormatInt(e.Lag, 10) + " changelog records"
}

// Member is one instance of the application and the partitions it owns.
type Member struct {
	Name       string  `json:"member"`
	URL        string  `json:"url"`
	Partitions []int32 `json:"partitions"`
	// Standbys are the partitions whose standby copy this member keeps,
	// by the placement every member computes from the group's
	// description (see discovery.View.Standbys).
	Standbys []int32 `json:"standby_partitions"`
}

// TaskStatus describes one task of this member.
type TaskStatus struct {
	Partition  int32  `json:"partition"`
	State      string `json:"state"` // "restoring", "active" or "standby"
	Checkpoint int64  `json:"checkpoint"`
	// RestoreDone and RestoreTotal count changelog records of the current restore.
	RestoreDone  int64 `json:"restore_done"`
	RestoreTotal int64 `json:"restore_total"`
	// Lag is, for a standby, the changelog records it has not applied yet
	// (the changelog's end it last saw minus its checkpoint).
	Lag *int64 `json:"lag,omitempty"`
}

// PartitionOffsets is where one partition stands: the group's committed
// input offset and the input's end, and, for a task of this member, its
// store's checkpoint against the changelog's end.
type PartitionOffsets struct {
	Partition int32 `json:"partition"`
	// Committed is the group's committed input offset, -1 if none.
	Committed int64 `json:"committed"`
	End       int64 `json:"end"`
	Lag       int64 `json:"lag"`
	// Local reports whether the partition is a task of this member; the
	// store fields are set only then.
	Local        bool   `json:"local"`
	Checkpoint   *int64 `json:"checkpoint,omitempty"`
	ChangelogEnd *int64 `json:"changelog_end,omitempty"`
	RestoreLag   *int64 `json:"restore_lag,omitempty"`
}

// Update is one count made durable by a commit, for subscribers.
type Update struct {
	Key       string
	Value     int64
	Partition int32
	// Offset is the changelog offset that made the count durable. It never
	// decreases within a partition; events carry it in their id.
	Offset int64
}

// WindowUpdate is one window of a windowed store made durable by a
// commit, for subscribers: its new count, or its removal (Deleted: a
// session merged into another).
type WindowUpdate struct {
	Key        string
	Start, End int64
	Value      int64
	Deleted    bool
	Partition  int32
	// Offset is the offset of the windowed store's changelog that made
	// the window durable (the batch's last in the partition). It never
	// decreases within a partition.
	Offset int64
}

// KeyStreamPosition reads the Last-Event-ID of a key subscription: a key
// stream's event id is the count it carries (a key's count only rises,
// so the value is the stream's position). It is -1 when the id is
// missing or not such a value (a prefix stream's "<partition>-<offset>",
// say): the client has no position, and is sent the current value.
func KeyStreamPosition(lastEventID string) int64 {
	v, err := strconv.ParseInt(lastEventID, 10, 64)
	if err != nil || v < 0 {
		return -1
	}
	return v
}
