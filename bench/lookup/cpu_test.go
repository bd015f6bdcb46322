package lookup

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// clockTicks is USER_HZ, the unit of /proc/stat; 100 on every Linux
// architecture Go supports.
const clockTicks = 100

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
		s.procs[i], _ = testkit.CPUTime(pid)
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
