package subscribe

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Event types and the heartbeat, as they appear on the wire.
const (
	EventCount = "count"
	EventMoved = "moved"
	heartbeat  = ": ping\n\n"
)

// EventID is the id of a prefix stream's event that carries an update:
// the partition and the changelog offset that made the count durable,
// "<partition>-<offset>". It never decreases within a partition. (A key
// stream's event id is its value: a key's count only rises, so the value
// is the stream's position.)
func EventID(partition int32, offset int64) string {
	return string(appendID(nil, partition, offset))
}

// ParseEventID reads an id EventID made; ok is false for anything else
// (a key stream's value, say).
func ParseEventID(id string) (partition int32, offset int64, ok bool) {
	ps, os, found := strings.Cut(id, "-")
	p, perr := strconv.ParseInt(ps, 10, 32)
	o, oerr := strconv.ParseInt(os, 10, 64)
	if !found || perr != nil || oerr != nil || p < 0 || o < 0 || ps[0] == '+' || os[0] == '+' {
		return 0, 0, false
	}
	return int32(p), o, true
}

func appendID(b []byte, partition int32, offset int64) []byte {
	b = strconv.AppendInt(b, int64(partition), 10)
	b = append(b, '-')
	return strconv.AppendInt(b, offset, 10)
}

// appendRetry is the first line of every stream.
func appendRetry(b []byte, d time.Duration) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, d.Milliseconds(), 10)
	return append(b, "\n\n"...)
}

// What a count event's id says.
type idKind uint8

const (
	noID     idKind = iota // a prefix stream's snapshot: its changelog offset is not known
	offsetID               // a prefix stream's update: EventID
	valueID                // a key stream's event: the value
)

// appendCount frames a count event.
func appendCount(b []byte, key string, value int64, partition int32, offset int64, id idKind) []byte {
	switch id {
	case offsetID:
		b = append(b, "id: "...)
		b = appendID(b, partition, offset)
		b = append(b, '\n')
	case valueID:
		b = append(b, "id: "...)
		b = strconv.AppendInt(b, value, 10)
		b = append(b, '\n')
	}
	b = append(b, "event: "+EventCount+"\ndata: {\"key\":"...)
	b = appendJSONString(b, key)
	b = append(b, `,"value":`...)
	b = strconv.AppendInt(b, value, 10)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(partition), 10)
	return append(b, "}\n\n"...)
}

// appendWindow frames a windowed store's event: a window's count, or a
// retraction (value null), with the id of its partition and changelog
// offset (the checkpoint, for a snapshot's window), none if it has none.
func appendWindow(b []byte, q *queued) []byte {
	if q.Offset >= 0 {
		b = append(b, "id: "...)
		b = appendID(b, q.Partition, q.Offset)
		b = append(b, '\n')
	}
	b = append(b, "event: "+EventCount+"\ndata: {\"key\":"...)
	b = appendJSONString(b, q.Key)
	b = append(b, `,"start":`...)
	b = strconv.AppendInt(b, q.start, 10)
	b = append(b, `,"end":`...)
	b = strconv.AppendInt(b, q.end, 10)
	b = append(b, `,"value":`...)
	if q.deleted {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, q.Value, 10)
	}
	return append(b, "}\n\n"...)
}

// SnapshotEnd opens the comment that follows the snapshot of a windowed
// store's stream, once per partition read: ": snapshot end <id>", the id
// (EventID) of the partition's checkpoint, or no id when the partition
// has none. Comments reach no EventSource listener; a member that relays
// a stream reads it to know which windows the snapshot left out: those
// are gone (internal/api, windowFollower).
const SnapshotEnd = "snapshot end"

// SnapshotTruncated opens the comment that says a prefix stream's
// snapshot was cut at SnapshotLimit keys (windows, for a windowed store).
const SnapshotTruncated = "snapshot truncated at"

// appendSnapshotEnd frames the SnapshotEnd comment of partition.
func appendSnapshotEnd(b []byte, partition int32, checkpoint int64) []byte {
	b = append(b, ": "+SnapshotEnd...)
	if checkpoint >= 0 {
		b = append(b, ' ')
		b = appendID(b, partition, checkpoint)
	}
	return append(b, "\n\n"...)
}

// appendMoved frames the last event of a stream whose partition moved.
func appendMoved(b []byte, partition int32, reason string) []byte {
	b = append(b, "event: "+EventMoved+"\ndata: {\"partition\":"...)
	b = strconv.AppendInt(b, int64(partition), 10)
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, reason)
	return append(b, "}\n\n"...)
}

// appendJSONString appends s as a JSON string. Plain printable ASCII is
// copied as is; anything else goes through encoding/json, which escapes
// control characters and replaces invalid UTF-8 with U+FFFD. Either way the
// result holds no newline, so it fits one data line.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
