package lookup

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// and of /proc/stat; 100 on every Linux architecture Go supports.
const clockTicks = 100

// procCPU is the CPU time a process has used so far (user + system).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses; fields resume
	// after the last ')'. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// hostCPU is the machine's busy and total CPU time from /proc/stat, and
// its steal time (a VM's CPU taken by the hypervisor).
type hostCPU struct{ busy, total, steal time.Duration }

func readHostCPU() (hostCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return hostCPU{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return hostCPU{}, fmt.Errorf("/proc/stat: %q", line)
	}
	var h hostCPU
	// user nice system idle iowait irq softirq steal [guest guest_nice]
	for i, s := range f[1:9] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return hostCPU{}, err
		}
		d := time.Duration(v) * time.Second / clockTicks
		h.total += d
		switch i {
		case 3, 4: // idle, iowait
		case 7:
			h.steal += d
		default:
			h.busy += d
		}
	}
	return h, nil
}

// cpuSnap is one reading of every process the benchmark watches.
type cpuSnap struct {
	at    time.Time
	procs []time.Duration // in the order of cpuWatch.pids
	host  hostCPU
}

// cpuWatch reads the CPU time of the instances, of this process (the load
// generator, plus the kfake broker it hosts) and of the whole machine.
type cpuWatch struct {
	names []string
	pids  []int
}

func (w cpuWatch) snap() cpuSnap {
	s := cpuSnap{at: time.Now(), procs: make([]time.Duration, len(w.pids))}
	for i, pid := range w.pids {
		s.procs[i], _ = procCPU(pid)
	}
	s.host, _ = readHostCPU()
	return s
}

// cpuUse is what happened between two snaps.
type cpuUse struct {
	wall  time.Duration
	procs []time.Duration
	host  hostCPU // deltas
}

func (w cpuWatch) between(a, b cpuSnap) cpuUse {
	u := cpuUse{wall: b.at.Sub(a.at), procs: make([]time.Duration, len(w.pids))}
	for i := range w.pids {
		u.procs[i] = b.procs[i] - a.procs[i]
	}
	u.host = hostCPU{busy: b.host.busy - a.host.busy, total: b.host.total - a.host.total, steal: b.host.steal - a.host.steal}
	return u
}

// cores is a CPU time over the wall time: 1.0 is one core kept busy.
func (u cpuUse) cores(d time.Duration) float64 { return d.Seconds() / u.wall.Seconds() }

// others is the machine's busy time not spent by the watched processes:
// other tenants of a shared machine, and the kernel's softirq work that
// is not charged to a process.
func (u cpuUse) others() time.Duration {
	d := u.host.busy
	for _, p := range u.procs {
		d -= p
	}
	return max(d, 0)
}

// findInstances returns, by member name, the pids of the abacus children
// of this process (testkit does not expose them): a child whose executable
// is bin and whose environment names ABACUS_INSTANCE_ID.
func findInstances(bin string) (map[string]int, error) {
	self := os.Getpid()
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(self) {
			continue
		}
		if exe, err := os.Readlink(d + "/exe"); err != nil || exe != bin {
			continue
		}
		env, err := os.ReadFile(d + "/environ")
		if err != nil {
			continue
		}
		// Later entries win, as for exec: testkit appends its own.
		name := ""
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("ABACUS_INSTANCE_ID=")); ok {
				name = string(v)
			}
		}
		if name != "" {
			out[name] = pid
		}
	}
	return out, nil
}
