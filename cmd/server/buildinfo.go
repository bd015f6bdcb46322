package main

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// commit is the source revision, stamped at build time like version
// (-ldflags "-X main.commit=..."); empty, the Go toolchain's VCS stamp
// is used (go build in a git checkout), else "unknown".
var commit = ""

// buildCommit is the revision this binary was built from.
func buildCommit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" && dirty {
			rev += "-dirty"
		}
		if rev != "" {
			return rev
		}
	}
	return "unknown"
}

// newBuildInfo is abacus_build_info: always 1, its labels say what runs,
// so a dashboard or an alert can tell versions apart in a rolling upgrade.
func newBuildInfo() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "abacus_build_info",
		Help: "Always 1; the labels name the version, the source revision and the Go version of the binary.",
		ConstLabels: prometheus.Labels{
			"version": version, "commit": buildCommit(), "goversion": runtime.Version(),
		},
	}, func() float64 { return 1 })
}
