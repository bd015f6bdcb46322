// Package delivery keeps the account of what a session's producer
// delivered. Its Tracker reads the producer's events on a goroutine of its
// own, so the producer never waits on them, and answers a commit under its
// own lock: whether the commit's sends are all reported (Wait, WaitMark),
// where each task's last changelog record landed (the checkpoint), and
// whether anyone else wrote among a task's changelog records since it
// started (ForeignChangelogRecords).
package delivery
