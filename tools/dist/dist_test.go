package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// testVersion exercises every part of a package version: a prerelease,
// commits after the tag, a dirty tree.
const testVersion = "v9.8.7-rc.1-3-g0123abc-dirty"

// TestDistBuildsThisPlatform runs the release build for this machine's
// platform only (make dist builds all six): the archive holds the binary,
// which prints the stamped version, and the documents; SHA256SUMS matches;
// on Linux the .deb and .rpm are packages that dpkg-deb and rpm read, with
// the binary in /usr/bin.
func TestDistBuildsThisPlatform(t *testing.T) {
	if testing.Short() {
		t.Skip("builds slipway; not in -short runs")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatal("no go tool on PATH")
	}
	src, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	host := target{runtime.GOOS, runtime.GOARCH}
	out := t.TempDir()
	mtime := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	var log bytes.Buffer
	made, err := run(context.Background(), options{src: src, out: out, version: testVersion, targets: []target{host}, mtime: mtime}, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}

	archive := "slipway_9.8.7-rc.1-3-g0123abc-dirty_" + host.os + "_" + host.arch + ".tar.gz"
	if host.os == "windows" {
		archive = strings.TrimSuffix(archive, ".tar.gz") + ".zip"
	}
	debName := "slipway_9.8.7~rc.1+git3.0123abc.dirty_" + host.arch + ".deb"
	rpmName := "slipway-9.8.7~rc.1+git3.0123abc.dirty-1." + map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[host.arch] + ".rpm"
	want := []string{archive, "SHA256SUMS"}
	if host.os == "linux" {
		want = append(want, debName, rpmName)
	}
	if entries, _ := os.ReadDir(out); !slices.Equal(names(entries), slices.Sorted(slices.Values(want))) || !slices.Equal(slices.Sorted(slices.Values(made)), slices.Sorted(slices.Values(want))) {
		t.Fatalf("made %v, the directory holds %v; want %v", made, names(entries), want)
	}

	t.Run("archive", func(t *testing.T) {
		files := readArchive(t, filepath.Join(out, archive))
		docs, err := docFiles(src)
		if err != nil {
			t.Fatal(err)
		}
		wantFiles := []string{host.exe()}
		for _, doc := range docs {
			wantFiles = append(wantFiles, filepath.Base(doc))
		}
		if got := slices.Sorted(maps.Keys(files)); !slices.Equal(got, slices.Sorted(slices.Values(wantFiles))) {
			t.Fatalf("archive holds %v, want %v", got, wantFiles)
		}
		readme, _ := os.ReadFile(filepath.Join(src, "README.md"))
		if !bytes.Equal(files["README.md"].data, readme) || files["README.md"].mode != 0o644 {
			t.Errorf("the archive's README.md (mode %v) is not the repository's", files["README.md"].mode)
		}
		if mode := files[host.exe()].mode; mode != 0o755 {
			t.Errorf("the binary's mode in the archive is %v, want -rwxr-xr-x", mode)
		}
		binary := filepath.Join(t.TempDir(), host.exe())
		if err := os.WriteFile(binary, files[host.exe()].data, 0o755); err != nil {
			t.Fatal(err)
		}
		got, err := exec.Command(binary, "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(got), "slipway "+testVersion+"\n") && !strings.HasPrefix(string(got), "slipway "+testVersion+" (commit ") {
			t.Errorf("slipway --version: %v\n%s", err, got)
		}
	})

	t.Run("SHA256SUMS", func(t *testing.T) {
		sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, line := range strings.Split(strings.TrimSuffix(string(sums), "\n"), "\n") {
			sum, name, ok := strings.Cut(line, "  ")
			if !ok {
				t.Fatalf("SHA256SUMS line %q is not <sha256>  <name>", line)
			}
			if got, err := fileSHA256(filepath.Join(out, name)); err != nil || got != sum {
				t.Errorf("%s: sha256 %s, SHA256SUMS says %s (%v)", name, got, sum, err)
			}
			listed = append(listed, name)
		}
		if !slices.Equal(listed, slices.Sorted(slices.Values(made[:len(made)-1]))) {
			t.Errorf("SHA256SUMS lists %v; made %v", listed, made)
		}
		if sha256sum, err := exec.LookPath("sha256sum"); err == nil {
			cmd := exec.Command(sha256sum, "--check", "--strict", "SHA256SUMS")
			cmd.Dir = out
			if got, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("sha256sum --check: %v\n%s", err, got)
			}
		}
	})

	if host.os != "linux" {
		return
	}
	t.Run("deb", func(t *testing.T) {
		dpkgDeb := needTool(t, "dpkg-deb", "dpkg")
		deb := filepath.Join(out, debName)
		info := runTool(t, dpkgDeb, "--info", deb)
		for _, field := range []string{"Package: slipway", "Version: 9.8.7~rc.1+git3.0123abc.dirty", "Architecture: " + host.arch, "Homepage: " + homepage} {
			if !strings.Contains(info, field) {
				t.Errorf("dpkg-deb --info lacks %q:\n%s", field, info)
			}
		}
		contents := runTool(t, dpkgDeb, "--contents", deb)
		for _, line := range []string{"-rwxr-xr-x root/root", "./usr/bin/slipway", "./usr/share/doc/slipway/README.md"} {
			if !strings.Contains(contents, line) {
				t.Errorf("dpkg-deb --contents lacks %q:\n%s", line, contents)
			}
		}
	})
	t.Run("rpm", func(t *testing.T) {
		rpmTool := needTool(t, "rpm", "rpm")
		rpm := filepath.Join(out, rpmName)
		if files := runTool(t, rpmTool, "-qpl", rpm); !strings.Contains(files, "/usr/bin/slipway\n") {
			t.Errorf("rpm -qpl lacks /usr/bin/slipway:\n%s", files)
		}
		if docs := runTool(t, rpmTool, "-qpd", rpm); !strings.Contains(docs, "/usr/share/doc/slipway/README.md\n") {
			t.Errorf("rpm -qpd (documentation) lacks README.md:\n%s", docs)
		}
		if nvr := runTool(t, rpmTool, "-qp", "--queryformat", "%{NAME} %{VERSION} %{RELEASE}", rpm); nvr != "slipway 9.8.7~rc.1+git3.0123abc.dirty 1" {
			t.Errorf("rpm name, version, release: %q", nvr)
		}
	})
}

func TestPackageVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want packageVersion
	}{
		{"v1.2.3", packageVersion{version: "1.2.3"}},
		{"1.2.3", packageVersion{version: "1.2.3"}},
		{"v1.2.3-dirty", packageVersion{version: "1.2.3", metadata: "dirty"}},
		{"v1.2.3-4-g0123abc", packageVersion{version: "1.2.3", metadata: "git4.0123abc"}},
		{"v1.2.3-rc.1", packageVersion{version: "1.2.3", prerelease: "rc.1"}},
		{"v1.2.3-rc-1-4-g0123abc-dirty", packageVersion{version: "1.2.3", prerelease: "rc.1", metadata: "git4.0123abc.dirty"}},
		{"2026.11", packageVersion{version: "2026.11"}},
		{"0123abc", packageVersion{version: "0.0.0", metadata: "git.0123abc"}},
		{"0123abc-dirty", packageVersion{version: "0.0.0", metadata: "git.0123abc.dirty"}},
		{"dev", packageVersion{version: "0.0.0", metadata: "dev"}},
	} {
		if got := packageVersionOf(tc.in); got != tc.want {
			t.Errorf("packageVersionOf(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestRunRefusesAVersionThatCannotNameAFile(t *testing.T) {
	for _, version := range []string{"", "1.2/3", "-1", "1.2 3"} {
		if _, err := run(context.Background(), options{src: "../..", out: t.TempDir(), version: version}, io.Discard); err == nil || !strings.Contains(err.Error(), "-version") {
			t.Errorf("version %q: %v", version, err)
		}
	}
}

// needTool finds a tool a check needs: the check skips, loudly, where it is
// missing, and fails in CI (CI=true), where scripts/install-test-deps.sh
// installs the package.
func needTool(t *testing.T, tool, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err == nil {
		return path
	}
	msg := tool + " is missing: apt-get install " + debianPackage + " (make test-deps does)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED: " + msg)
	return ""
}

func runTool(t *testing.T, tool string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tool, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

type archivedFile struct {
	data []byte
	mode fs.FileMode
}

// readArchive returns the regular files of a .tar.gz or .zip by name.
func readArchive(t *testing.T, path string) map[string]archivedFile {
	t.Helper()
	files := map[string]archivedFile{}
	if strings.HasSuffix(path, ".zip") {
		zr, err := zip.OpenReader(path)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		for _, f := range zr.File {
			r, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(r)
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
			files[f.Name] = archivedFile{data, f.Mode().Perm()}
		}
		return files
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			t.Errorf("%s: %s is not a regular file", path, h.Name)
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = archivedFile{data, fs.FileMode(h.Mode).Perm()}
	}
}

func names(entries []os.DirEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
