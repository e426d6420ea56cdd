package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/config"
)

func TestMaskerHidesSecretValuesAndKeepsTheLineVisible(t *testing.T) {
	m := newMasker(&config.Config{Env: []config.EnvVar{
		{Name: "MAIL_PASS", Value: "s3cr3tvalue", Secret: true},
		{Name: "SHORT", Value: "ab", Secret: true},          // too short to mask: it would mask everything
		{Name: "PLAIN", Value: "production", Secret: false}, // not a secret
	}})
	for _, tc := range []struct{ in, want string }{
		{"DB_PASSWORD=hunter2\n", "DB_PASSWORD=***"},
		{"db_password=hunter2", "db_password=***"},
		{"export AWS_SECRET_ACCESS_KEY=abc/def", "export AWS_SECRET_ACCESS_KEY=***"},
		{"APP_KEY=base64:c2VjcmV0\r\n", "APP_KEY=***"},
		{"GITHUB_TOKEN = 'ghp_123'", "GITHUB_TOKEN = ***"},
		{"STRIPE_PRIVATE=sk_live_1", "STRIPE_PRIVATE=***"},
		{"GCP_CREDENTIALS=/etc/gcp.json", "GCP_CREDENTIALS=***"},
		{"  password: hunter2", "  password: ***"},
		{`  "api_key": "abc",`, `  "api_key": ***`},
		{"DB_PASSWORD=", "DB_PASSWORD="}, // nothing to hide; a change to it still shows
		{"APP_ENV=production", "APP_ENV=production"},
		{"DB_HOST=db1", "DB_HOST=db1"},
		{"APP_URL=https://shop.example.com", "APP_URL=https://shop.example.com"},
		{"SMTP_LOGIN=s3cr3tvalue", "SMTP_LOGIN=***"},                         // a secret env value, whatever the key
		{"# the mail password is s3cr3tvalue", "# the mail password is ***"}, // anywhere in a line
		{"AB=ab", "AB=ab"},
		{"# comment", "# comment"},
		{"", ""},
	} {
		if got := m.lines([]string{tc.in})[0]; got != tc.want {
			t.Errorf("%q shown as %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMaskerHidesMultiLineSecrets(t *testing.T) {
	m := newMasker(&config.Config{})
	in := splitLines(`APP_NAME=shop
JWT_KEY="-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASC
-----END PRIVATE KEY-----"
AFTER=1
-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEA
abcdef
-----END RSA PRIVATE KEY-----
NOTE="a plain value
over two lines"
TAIL=2
`)
	want := []string{
		"APP_NAME=shop",
		"JWT_KEY=***",
		"***",
		"***",
		"AFTER=1",
		"-----BEGIN RSA PRIVATE KEY-----",
		"***",
		"***",
		"-----END RSA PRIVATE KEY-----",
		`NOTE="a plain value`,
		`over two lines"`,
		"TAIL=2",
	}
	if got := m.lines(in); !slices.Equal(got, want) {
		t.Errorf("shown as\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestUnifiedDiff(t *testing.T) {
	m := newMasker(&config.Config{})
	for _, tc := range []struct {
		name, old, new string
		want           []string
	}{
		{"same", "a\nb\n", "a\nb\n", nil},
		{"new file", "", "a\nb\n", []string{"@@ -0,0 +1,2 @@", "+a", "+b"}},
		{"emptied", "a\n", "", []string{"@@ -1 +0,0 @@", "-a"}},
		{"secret changed", "APP=1\nDB_PASSWORD=hunter1\nX=2\n", "APP=1\nDB_PASSWORD=hunter2\nX=2\n",
			[]string{"@@ -1,3 +1,3 @@", " APP=1", "-DB_PASSWORD=***", "+DB_PASSWORD=***", " X=2"}},
		{"no newline at the end", "a\nb", "a\nb\n",
			[]string{"@@ -1,2 +1,2 @@", " a", "-b", `\ No newline at end of file`, "+b"}},
		{"context and separate hunks",
			"1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n",
			"1\nTWO\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\nFOURTEEN\n15\n",
			[]string{"@@ -1,5 +1,5 @@", " 1", "-2", "+TWO", " 3", " 4", " 5",
				"@@ -11,5 +11,5 @@", " 11", " 12", " 13", "-14", "+FOURTEEN", " 15"}},
		{"near changes share a hunk",
			"1\n2\n3\n4\n5\n6\n7\n8\n9\n",
			"1\nX\n3\n4\n5\n6\n7\nY\n9\n",
			[]string{"@@ -1,9 +1,9 @@", " 1", "-2", "+X", " 3", " 4", " 5", " 6", " 7", "-8", "+Y", " 9"}},
		{"insert at the top", "b\nc\n", "a\nb\nc\n", []string{"@@ -1,2 +1,3 @@", "+a", " b", " c"}},
	} {
		if got := unifiedDiff(tc.old, tc.new, m); !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n%s\nwant\n%s", tc.name, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
		}
	}
}

// TestLineEditsAreShortest checks the edit script against the longest
// common subsequence, and that it turns a into b, on random inputs.
func TestLineEditsAreShortest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func() []string {
		lines := make([]string, rng.IntN(12))
		for i := range lines {
			lines[i] = string(rune('a' + rng.IntN(4)))
		}
		return lines
	}
	for range 3000 {
		a, b := random(), random()
		edits := lineEdits(a, b)
		var gotA, gotB []string
		changes := 0
		for _, e := range edits {
			switch e.op {
			case opEqual:
				if a[e.a] != b[e.b] {
					t.Fatalf("%v -> %v: kept line %d/%d differs", a, b, e.a, e.b)
				}
				gotA, gotB = append(gotA, a[e.a]), append(gotB, b[e.b])
			case opDelete:
				gotA = append(gotA, a[e.a])
				changes++
			case opInsert:
				gotB = append(gotB, b[e.b])
				changes++
			}
		}
		if !slices.Equal(gotA, a) || !slices.Equal(gotB, b) {
			t.Fatalf("%v -> %v: edits %v do not make both", a, b, edits)
		}
		if want := len(a) + len(b) - 2*lcs(a, b); changes != want {
			t.Fatalf("%v -> %v: %d changes, the shortest has %d", a, b, changes, want)
		}
	}
}

func lcs(a, b []string) int {
	row := make([]int, len(b)+1)
	for i := range a {
		prev := 0
		for j := range b {
			cur := row[j+1]
			if a[i] == b[j] {
				row[j+1] = prev + 1
			} else {
				row[j+1] = max(row[j+1], row[j])
			}
			prev = cur
		}
	}
	return row[len(b)]
}

func TestLineEditsOfVeryDifferentFilesStayBounded(t *testing.T) {
	var a, b []string
	for i := range 3000 {
		a = append(a, "a"+string(rune('0'+i%10)))
		b = append(b, "b"+string(rune('0'+i%10)))
	}
	edits := lineEdits(a, b)
	if len(edits) != 6000 || edits[0].op != opDelete || edits[5999].op != opInsert {
		t.Fatalf("%d edits", len(edits))
	}
}

func TestDiffSharedGroupsHostsByTheirCopy(t *testing.T) {
	m := newMasker(&config.Config{})
	local := []byte("A=1\nDB_PASSWORD=new\n")
	lc := localCopy{sum: sumOf(local), size: int64(len(local)), head: local}
	old := []byte("A=1\nDB_PASSWORD=old\n")
	bodies := map[string][]byte{"web1": old, "web3": old, "web5": []byte("\x00\x01binary")}
	hosts := []hostCopy{
		{"web1", sumOf(old)}, {"web2", lc.sum}, {"web3", sumOf(old)}, {"web4", ""},
		{"web5", sumOf(bodies["web5"])}, {"web6", sumUnreadable}, {"web7", lc.sum},
	}
	var fetched []string
	fetch := func(h string) ([]byte, error) {
		fetched = append(fetched, h)
		return bodies[h], nil
	}
	d, err := diffShared(SharedLocal{Name: ".env", Path: ".env.production"}, "/srv/app/shared/.env", lc, hosts, fetch, m)
	if err != nil {
		t.Fatal(err)
	}
	// Each distinct copy is fetched once, from its first host.
	if !slices.Equal(fetched, []string{"web1", "web5"}) {
		t.Errorf("fetched from %v", fetched)
	}
	type group struct {
		hosts []string
		same  bool
		diff  []string
		note  string
	}
	want := []group{
		{[]string{"web1", "web3"}, false, []string{"@@ -1,2 +1,2 @@", " A=1", "-DB_PASSWORD=***", "+DB_PASSWORD=***"}, ""},
		{[]string{"web2", "web7"}, true, nil, ""},
		{[]string{"web4"}, false, []string{"@@ -0,0 +1,2 @@", "+A=1", "+DB_PASSWORD=***"}, "no copy yet"},
		{[]string{"web5"}, false, nil, "the hosts' copy is binary or larger than 1 MiB: not shown"},
		{[]string{"web6"}, false, nil, "the host could not read its copy (permissions?)"},
	}
	if len(d.Copies) != len(want) {
		t.Fatalf("groups %+v", d.Copies)
	}
	for i, w := range want {
		c := d.Copies[i]
		if !slices.Equal(c.Hosts, w.hosts) || c.Same != w.same || !slices.Equal(c.Diff, w.diff) || c.Note != w.note {
			t.Errorf("group %d = %+v, want %+v", i, c, w)
		}
	}
	if got := d.Differing(); !slices.Equal(got, []string{"web1", "web3", "web4", "web5", "web6"}) || !d.Differs() {
		t.Errorf("differing %v", got)
	}

	// A local file too large to show: every differing copy says so, and
	// none is fetched.
	fetched = nil
	big := localCopy{sum: "ff", size: maxSharedDiff + 1, head: make([]byte, maxSharedDiff+1)}
	d, err = diffShared(SharedLocal{Name: ".env", Path: "big"}, "/x", big, hosts[:2], fetch, m)
	if err != nil || len(fetched) != 0 || d.Copies[0].Note != "binary or larger than 1 MiB: not shown" {
		t.Errorf("large local file: %+v %v (fetched %v)", d, err, fetched)
	}
	// A host whose copy cannot be fetched fails the comparison, naming it.
	_, err = diffShared(SharedLocal{Name: ".env", Path: "x"}, "/x", lc, hosts[:1], func(string) ([]byte, error) { return nil, errors.New("gone") }, m)
	if err == nil || !strings.Contains(err.Error(), "on web1: gone") {
		t.Errorf("failed fetch: %v", err)
	}
}

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
