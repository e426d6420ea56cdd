package deploy

import (
	"testing"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
)

// remoteExec is an executor of a host reached over a network.
type remoteExec struct{ host.Local }

func (*remoteExec) Loopback() bool { return false }

// TestCompressFor: auto takes zstd wherever the host has it and GNU tar,
// gzip over a network otherwise, and nothing on a loopback address; a
// setting other than auto is taken as it is.
func TestCompressFor(t *testing.T) {
	for _, c := range []struct {
		setting  string
		zstd     bool
		tar      string
		loopback bool
		want     string
		local    bool // host: local, no SSH
	}{
		{"auto", true, tarGNU, true, compressNone, true},
		{"auto", true, tarGNU, true, compressZstd, false},
		{"auto", true, tarGNU, false, compressZstd, false},
		{"auto", true, tarBusyBox, false, compressGzip, false},
		{"auto", true, tarBusyBox, true, compressNone, false},
		{"auto", false, tarGNU, false, compressGzip, false},
		{"auto", false, tarGNU, true, compressNone, false},
		{"gzip", true, tarGNU, true, compressGzip, false},
		{"none", true, tarGNU, false, compressNone, false},
		{"zstd", false, tarGNU, false, compressZstd, false},
	} {
		var ex host.Executor = &host.Local{}
		if !c.loopback {
			ex = &remoteExec{}
		}
		d := &deployRun{run: &run{opts: Options{Config: &config.Config{Source: config.Source{Compress: c.setting}}}}}
		tg := &Target{Exec: ex, Host: config.Host{Local: c.local}, State: &State{Zstd: c.zstd, Tar: c.tar}}
		if got := d.compressFor(tg); got != c.want {
			t.Errorf("compress: %s, zstd %v, %s tar, loopback %v: %q, want %q", c.setting, c.zstd, c.tar, c.loopback, got, c.want)
		}
	}
}
