package artifact

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
)

// The environment variables that bound the cache, and their defaults.
const (
	EnvMaxSize        = "SLIPWAY_ARTIFACTS_MAX_SIZE"
	EnvMaxEntries     = "SLIPWAY_ARTIFACTS_MAX_ENTRIES"
	DefaultMaxBytes   = 5 << 30
	DefaultMaxEntries = 50
)

// Open returns the user's cache, in os.UserCacheDir()/slipway/artifacts
// (~/.cache/slipway/artifacts on Linux, $XDG_CACHE_HOME when set), bounded
// as getenv's SLIPWAY_ARTIFACTS_MAX_SIZE and SLIPWAY_ARTIFACTS_MAX_ENTRIES
// say. A bad value is an *EnvError.
func Open(getenv func(string) string) (*Cache, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	c := &Cache{Dir: filepath.Join(base, "slipway", "artifacts"), MaxBytes: DefaultMaxBytes, MaxEntries: DefaultMaxEntries}
	if v := getenv(EnvMaxSize); v != "" {
		if c.MaxBytes, err = ParseSize(v); err != nil {
			return nil, &EnvError{Var: EnvMaxSize, Value: v, Want: "a size such as 5GB, 500MB or 2GiB (powers of 1024), or 0 to keep nothing"}
		}
	}
	if v := getenv(EnvMaxEntries); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, &EnvError{Var: EnvMaxEntries, Value: v, Want: "a number of artifacts such as 50, or 0 to keep nothing"}
		}
		c.MaxEntries = n
	}
	return c, nil
}

// EnvError is a bad value of one of the cache's environment variables.
type EnvError struct{ Var, Value, Want string }

func (e *EnvError) Error() string {
	return fmt.Sprintf("%s=%q: give %s", e.Var, e.Value, e.Want)
}

// ParseSize reads a size in bytes: a number with an optional unit, K, M,
// G or T, each optionally followed by B or iB, all powers of 1024 ("5GB",
// "500M", "2GiB", "1.5G", "0"), or B for bytes.
func ParseSize(s string) (int64, error) {
	m := sizePattern.FindStringSubmatch(strings.ToUpper(strings.TrimSpace(s)))
	if m == nil {
		return 0, fmt.Errorf("bad size %q", s)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	shift := map[string]uint{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m[2]]
	bytes := n * float64(int64(1)<<shift)
	if err != nil || bytes > 1<<62 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(bytes), nil
}

var sizePattern = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?) ?(?:([KMGT])(?:I?B)?|B)?$`)

// cacheHomeVar is the environment variable that moves os.UserCacheDir,
// and so the cache, on this system.
func cacheHomeVar() string {
	switch runtime.GOOS {
	case "windows":
		return "LocalAppData"
	case "darwin", "ios":
		return "HOME"
	case "plan9":
		return "home"
	}
	return "XDG_CACHE_HOME"
}
