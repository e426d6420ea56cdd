// Command dist builds slipway's release files into one directory:
//
//   - slipway_<version>_<os>_<arch>.tar.gz (.zip for Windows) per platform,
//     holding the binary, README.md and the repository's LICENSE or NOTICE
//     files if it has any (archive.go);
//   - a .deb and an .rpm per Linux architecture, the binary in
//     /usr/bin/slipway and README.md as its documentation (packages.go);
//   - SHA256SUMS over all of them, in sha256sum's format.
//
// make dist runs it. It is a module of its own, so that the packaging
// libraries (nfpm and what it needs) never enter slipway's go.mod or binary.
//
//	go run . -version v1.2.3 -src ../.. -out ../../dist [-targets linux/amd64,darwin/arm64]
//
// The version is stamped into each binary and names the files (without a
// leading "v"). Files' times are $SOURCE_DATE_EPOCH if set, else now.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// releaseTargets are the platforms a release is built for. Keep them in
// step with cmd/slipway/crossbuild_test.go, which `make test` runs.
var releaseTargets = []target{
	{"linux", "amd64"}, {"linux", "arm64"},
	{"darwin", "amd64"}, {"darwin", "arm64"},
	{"windows", "amd64"}, {"windows", "arm64"},
}

// target is a platform, as GOOS and GOARCH.
type target struct{ os, arch string }

func (t target) String() string { return t.os + "/" + t.arch }

// exe is the binary's file name on the target.
func (t target) exe() string {
	if t.os == "windows" {
		return "slipway.exe"
	}
	return "slipway"
}

// options say what to build, from where, into where.
type options struct {
	src     string // the slipway repository
	out     string // where the release files go
	version string // stamped into the binaries, e.g. v1.2.3 or 1.2.3
	targets []target
	mtime   time.Time // of every file in the archives and packages
}

// versionPattern keeps the version usable in a file name and an ldflag.
var versionPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]*$`)

// versionFlag is where the version is stamped; make build stamps the same.
const versionFlag = "github.com/slipway-deploy/slipway/internal/cli.Version"

func main() {
	opts := options{targets: releaseTargets}
	flag.StringVar(&opts.version, "version", "", "the version to stamp and name the files with (required), e.g. v1.2.3")
	flag.StringVar(&opts.src, "src", "../..", "the slipway repository")
	flag.StringVar(&opts.out, "out", "../../dist", "the directory for the release files")
	flag.Func("targets", "comma-separated os/arch list (default: the six release targets)", func(s string) error {
		targets, err := parseTargets(s)
		opts.targets = targets
		return err
	})
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "dist: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	mtime, err := sourceDateEpoch(os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dist:", err)
		os.Exit(2)
	}
	opts.mtime = mtime
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, opts, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dist:", err)
		os.Exit(1)
	}
}

func parseTargets(list string) ([]target, error) {
	var targets []target
	for _, s := range strings.Split(list, ",") {
		goos, goarch, ok := strings.Cut(strings.TrimSpace(s), "/")
		if !ok || goos == "" || goarch == "" {
			return nil, fmt.Errorf("target %q: want os/arch, e.g. linux/amd64", s)
		}
		targets = append(targets, target{goos, goarch})
	}
	return targets, nil
}

// sourceDateEpoch is the time $SOURCE_DATE_EPOCH gives (reproducible
// builds: make dist sets it to the commit's time), else now.
func sourceDateEpoch(value string) (time.Time, error) {
	if value == "" {
		return time.Now().UTC().Truncate(time.Second), nil
	}
	seconds, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%s: want seconds since 1970", value)
	}
	return time.Unix(seconds, 0).UTC(), nil
}

// run builds every target's binary and its release files into opts.out,
// then writes SHA256SUMS over the files this run made, and returns their
// names.
func run(ctx context.Context, opts options, log io.Writer) ([]string, error) {
	if !versionPattern.MatchString(opts.version) {
		return nil, fmt.Errorf("-version %q: give a version such as v1.2.3 (letters, digits and ._+~- only)", opts.version)
	}
	if _, err := os.Stat(filepath.Join(opts.src, "cmd", "slipway")); err != nil {
		return nil, fmt.Errorf("-src %s is not the slipway repository: %w", opts.src, err)
	}
	if err := os.MkdirAll(opts.out, 0o755); err != nil {
		return nil, err
	}
	docs, err := docFiles(opts.src)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "slipway-dist-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	var made []string
	for _, t := range opts.targets {
		binary := filepath.Join(work, t.os+"_"+t.arch, t.exe())
		fmt.Fprintf(log, "dist: building %s\n", t)
		if err := build(ctx, opts, t, binary); err != nil {
			return nil, err
		}
		name, err := writeArchive(opts, t, binary, docs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t, err)
		}
		made = append(made, name)
		if t.os == "linux" {
			names, err := writePackages(opts, t, binary, docs)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t, err)
			}
			made = append(made, names...)
		}
	}
	if err := writeSums(opts.out, made); err != nil {
		return nil, err
	}
	made = append(made, "SHA256SUMS")
	for _, name := range made {
		fmt.Fprintf(log, "dist: %s\n", filepath.Join(opts.out, name))
	}
	return made, nil
}

// build compiles slipway for t as make build does: static, without local
// paths, with the version stamped.
func build(ctx context.Context, opts options, t target, binary string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X "+versionFlag+"="+opts.version,
		"-o", binary, "./cmd/slipway")
	cmd.Dir = opts.src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+t.os, "GOARCH="+t.arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("GOOS=%s GOARCH=%s go build ./cmd/slipway: %w\n%s", t.os, t.arch, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// docFiles are the files shipped beside the binary: README.md, and the
// repository's licence and notice files if it has any.
func docFiles(src string) ([]string, error) {
	readme := filepath.Join(src, "README.md")
	if _, err := os.Stat(readme); err != nil {
		return nil, err
	}
	docs := []string{readme}
	for _, pattern := range []string{"LICENSE*", "LICENCE*", "COPYING*", "NOTICE*"} {
		found, err := filepath.Glob(filepath.Join(src, pattern))
		if err != nil {
			return nil, err
		}
		docs = append(docs, found...)
	}
	return docs, nil
}

// fileVersion is the version as it appears in file names: without the
// leading "v" of a tag, so that v1.2.3 and VERSION=1.2.3 name the same files.
func fileVersion(version string) string { return strings.TrimPrefix(version, "v") }

// writeSums writes SHA256SUMS in dir for the named files, as sha256sum
// does (sha256sum -c checks it).
func writeSums(dir string, names []string) error {
	var b strings.Builder
	for _, name := range slices.Sorted(slices.Values(names)) {
		sum, err := fileSHA256(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, name)
	}
	return os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(b.String()), 0o644)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeFile creates path through write, and removes it if write fails.
func writeFile(path string, write func(io.Writer) error) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			err = errors.Join(err, os.Remove(path))
		}
	}()
	return write(f)
}
