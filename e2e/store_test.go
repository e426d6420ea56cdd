package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// The artifact store as the distribution layer (artifacts.store), proved
// against a real S3 server (SeaweedFS, testutil.StartS3) on loopback, which
// the hosts reach directly.

// storeConfig is the artifacts section for bucket prefix prefix on s3:
// this machine uploads through endpoint, the hosts download from
// hostsEndpoint ("" for the same).
func storeConfig(s3 *testutil.S3, prefix, endpoint, hostsEndpoint string) string {
	yml := "artifacts:\n  store: s3://" + s3.Bucket + "/" + prefix + "\n  endpoint: " + endpoint + "\n  region: us-east-1\n"
	if hostsEndpoint != "" {
		yml += "  hosts_endpoint: " + hostsEndpoint + "\n"
	}
	return yml
}

// packs lists the objects under prefix: their sizes, by key.
func packs(t *testing.T, s3 *testutil.S3, prefix string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for key, size := range s3.Objects(t) {
		if strings.HasPrefix(key, prefix+"/") {
			out[key] = size
		}
	}
	return out
}

func total(sizes map[string]int64) int64 {
	var n int64
	for _, s := range sizes {
		n += s
	}
	return n
}

// requestOverhead bounds what S3 requests add to the bytes of the packs
// they upload: headers and signatures, a HEAD before each PUT.
const requestOverhead = 16 << 10

// releaseAt hashes the release id under deployDir on h, and its manifest.
func releaseAt(t *testing.T, h *testutil.Host, deployDir, id string) map[string]string {
	t.Helper()
	tree := hashTree(t, h.Path(deployDir+"/releases/"+id))
	tree["(manifest)"] = sha(readFile(t, h.Path(deployDir+"/.slipway/manifests/"+id)))
	return tree
}

func liveAt(t *testing.T, h *testutil.Host, deployDir string) string {
	t.Helper()
	target, err := os.Readlink(h.Path(deployDir + "/current"))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(target)
}

// sameRelease asserts two releases hold the same entries, byte for byte,
// and the same manifest.
func sameRelease(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	for rel, entry := range want {
		if got[rel] != entry {
			t.Errorf("%s: %s is %q, want %q", what, rel, got[rel], entry)
		}
	}
	for rel := range got {
		if _, ok := want[rel]; !ok {
			t.Errorf("%s: %s should not be there", what, rel)
		}
	}
}

// TestStoreDeployPromoteRollback deploys staging and promotes to
// production through the store, twice (a cold deploy, then a delta), and
// rolls production back: each pack is uploaded once, by this machine,
// whatever the number of hosts and stages that use it; every host's
// release is the one a push makes, byte for byte.
func TestStoreDeployPromoteRollback(t *testing.T) {
	s3 := testutil.StartS3(t)
	relay := s3.Relay(t) // this machine's uploads are counted; the hosts download directly
	p := newPromotion(t)
	p.project = p.withEnv(s3.Env()...)
	config := readFile(t, filepath.Join(p.dir, "slipway.yml"))
	p.write("slipway.yml", config+storeConfig(s3, "shop", relay.Endpoint, s3.Endpoint))
	// The control: the same promotions pushed over SSH, into another
	// directory of production's hosts.
	p.write("pushed.yml", strings.Replace(config, "    hosts: [host3, host4]\n", "    hosts: [host3, host4]\n    deploy_to: /srv/pushed\n", 1))
	// An asset that does not compress: a pack that is the app's size.
	p.writeRandom("app/public/logo.png", 256<<10)
	p.repo.commit("store")

	// A dry run uploads nothing.
	p.mustRun("plan", "staging")
	if got := packs(t, s3, "shop"); len(got) != 0 {
		t.Fatalf("plan uploaded %v", got)
	}

	// Cold: one full pack, uploaded once; every host downloads it.
	sent := relay.Sent()
	res := p.mustRun("deploy", "staging")
	cold := packs(t, s3, "shop")
	if len(cold) != 1 {
		t.Fatalf("a cold deploy of two hosts made %d packs: %v", len(cold), cold)
	}
	up := relay.Sent() - sent
	if total(cold) < 256<<10 || up < total(cold) || up > total(cold)+requestOverhead {
		t.Errorf("the cold deploy sent %d bytes to the store for %d bytes of packs", up, total(cold))
	}
	for _, h := range p.staging() {
		if !strings.Contains(res.stderr, h.Name) || strings.Count(res.stderr, "full upload from the artifact store") != len(p.staging()) {
			t.Errorf("%s did not download its pack:\n%s", h.Name, res.stderr)
		}
	}
	for key, size := range cold {
		if data := s3.Get(t, key); int64(len(data)) != size || sha(string(data)) != filepath.Base(key) {
			t.Errorf("pack %s is not named by the SHA-256 of its %d bytes", key, size)
		}
	}

	// Promotion: production's hosts need the very same pack: nothing is
	// uploaded again.
	sent = relay.Sent()
	res = p.mustRun("deploy", "production", "--from", "staging")
	if got := packs(t, s3, "shop"); len(got) != len(cold) {
		t.Errorf("the promotion made new packs: %v (before: %v)", got, cold)
	}
	if up := relay.Sent() - sent; up > requestOverhead {
		t.Errorf("the promotion sent %d bytes to the store", up)
	}
	if !strings.Contains(res.stderr, "already in the store") {
		t.Errorf("the promotion does not say its pack was in the store:\n%s", res.stderr)
	}
	p.liveOn(p.production())
	sameTrees(t, p.staging()[0], append(p.production(), p.staging()[1])...)
	first := live(t, p.production()[0])

	// The control push: the same tree, over SSH, to /srv/pushed.
	p.mustRun("-c", "pushed.yml", "deploy", "production", "--from", "staging")
	for _, h := range p.production() {
		sameRelease(t, h.Name+": the release downloaded from the store against the one pushed",
			releaseAt(t, h, "/srv/pushed", liveAt(t, h, "/srv/pushed")), releaseAt(t, h, deployTo, live(t, h)))
	}

	// A change: one more pack (a delta, with delta uploads), uploaded once
	// for staging; production promoted from staging needs the same one.
	p.write("app/public/index.php", "<?php echo 'version 2';\n")
	p.repo.commit("v2")
	sent = relay.Sent()
	res = p.mustRun("deploy", "staging")
	after := packs(t, s3, "shop")
	if len(after) != len(cold)+1 {
		t.Fatalf("the redeploy made %d new packs: %v", len(after)-len(cold), after)
	}
	var change int64
	for key, size := range after {
		if _, old := cold[key]; !old {
			change = size
		}
	}
	if up := relay.Sent() - sent; up < change || up > change+requestOverhead {
		t.Errorf("the redeploy sent %d bytes to the store for a pack of %d bytes", up, change)
	}
	if uploadMode() == "" {
		if !strings.Contains(res.stderr, "delta (") || change > total(cold)/4 {
			t.Errorf("the redeploy's pack is not a delta (%d bytes; the full one %d):\n%s", change, total(cold), res.stderr)
		}
	}
	sent = relay.Sent()
	p.mustRun("deploy", "production", "--from", "staging")
	if got := packs(t, s3, "shop"); len(got) != len(after) {
		t.Errorf("the second promotion made new packs: %v (before: %v)", got, after)
	}
	if up := relay.Sent() - sent; up > requestOverhead {
		t.Errorf("the second promotion sent %d bytes to the store", up)
	}
	sameTrees(t, p.staging()[0], append(p.production(), p.staging()[1])...)
	p.mustRun("-c", "pushed.yml", "deploy", "production", "--from", "staging")
	for _, h := range p.production() {
		sameRelease(t, h.Name+": the delta downloaded from the store against the one pushed",
			releaseAt(t, h, "/srv/pushed", liveAt(t, h, "/srv/pushed")), releaseAt(t, h, deployTo, live(t, h)))
	}

	// Rollback: a switch, as ever; the store is not involved.
	sent = relay.Sent()
	p.mustRun("rollback", "production")
	for _, h := range p.production() {
		if got := live(t, h); got != first {
			t.Errorf("%s: rolled back to %s, want %s", h.Name, got, first)
		}
	}
	if up := relay.Sent() - sent; up != 0 {
		t.Errorf("the rollback sent %d bytes to the store", up)
	}
}

// TestStoreFallsBackToPush: a host with wget and no curl downloads; a
// host that has neither curl nor wget, a pack
// damaged in the store, a store the hosts cannot reach, one this machine
// cannot reach: each host that cannot use the store is pushed its upload
// with a warning, and ends up with the same release. Without credentials
// the deploy stops before any change; an AWS profile gives them.
func TestStoreFallsBackToPush(t *testing.T) {
	s3 := testutil.StartS3(t)
	base := newProject(t, 2, testutil.Options{})
	// Credentials from an outer environment must not leak in.
	p := base.withEnv(append([]string{"AWS_PROFILE=", "AWS_SHARED_CREDENTIALS_FILE="}, s3.Env()...)...)
	host1, host2 := p.fleet.Hosts[0], p.fleet.Hosts[1]
	host2.HideCommands(t, "curl", "wget")
	// host1 downloads with (GNU) wget, which reads the URL from standard
	// input as curl does.
	host1.HideCommands(t, "curl")
	p.config(storeConfig(s3, "fallback", s3.Endpoint, ""))

	res := p.mustRun("plan", "production")
	if !strings.Contains(res.stdout+res.stderr, "neither curl nor wget on this host") {
		t.Errorf("plan does not say host2 would be pushed:\n%s", res)
	}
	res = p.mustRun("deploy", "production")
	if !strings.Contains(res.stderr, "host2") || !strings.Contains(res.stderr, "neither curl nor wget is on this host's PATH") {
		t.Errorf("no warning for the host without curl or wget:\n%s", res.stderr)
	}
	if !strings.Contains(res.stderr, "full upload from the artifact store") || !strings.Contains(res.stderr, "downloaded by the host with wget") {
		t.Errorf("host1 did not download from the store with wget:\n%s", res.stderr)
	}
	id := p.fleetLive()
	sameRelease(t, "host2 (pushed) against host1 (from the store)", releaseAt(t, host1, deployTo, id), releaseAt(t, host2, deployTo, id))
	stored := packs(t, s3, "fallback")
	if len(stored) != 1 {
		t.Fatalf("packs: %v", stored)
	}

	// A pack damaged in the store: host1 finds it is not the pack.
	for key, size := range stored {
		s3.Put(t, key, []byte(strings.Repeat("x", int(size))))
	}
	host1.Run(t, "rm -rf "+deployTo)
	res = p.mustRun("deploy", "production", "--force")
	if !strings.Contains(res.stderr, "its SHA-256 differs") || !strings.Contains(res.stderr, "pushing its upload over SSH instead") {
		t.Errorf("no warning for the damaged pack:\n%s", res.stderr)
	}
	for key := range stored {
		if !strings.Contains(res.stderr, "the object "+key+" in s3://") || !strings.Contains(res.stderr, "delete it, and the next deploy uploads the pack again") {
			t.Errorf("the warning for the damaged pack does not name the object %s and the fix:\n%s", key, res.stderr)
		}
	}
	id = p.fleetLive()
	sameRelease(t, "host1 after the damaged pack", releaseAt(t, host2, deployTo, id), releaseAt(t, host1, deployTo, id))

	// The hosts cannot reach the store.
	p.config(storeConfig(s3, "fallback", s3.Endpoint, "http://127.0.0.1:1"))
	p.writeApp("v2")
	res = p.mustRun("deploy", "production")
	if !strings.Contains(res.stderr, "could not download its pack") {
		t.Errorf("no warning for the failed download:\n%s", res.stderr)
	}
	if got := readFile(t, host1.Path(deployTo+"/current/VERSION")); got != "v2\n" {
		t.Errorf("host1 serves %q", got)
	}

	// This machine cannot reach the store: every host is pushed.
	p.config(storeConfig(s3, "fallback", "http://127.0.0.1:1", ""))
	p.writeApp("v3")
	res = p.mustRun("deploy", "production")
	if !strings.Contains(res.stderr, "the artifact store could not be used from here") || strings.Contains(res.stderr, "upload from the artifact store") {
		t.Errorf("no warning for the unreachable store, or a host downloaded anyway:\n%s", res.stderr)
	}
	for _, h := range p.fleet.Hosts {
		if got := readFile(t, h.Path(deployTo+"/current/VERSION")); got != "v3\n" {
			t.Errorf("%s serves %q", h.Name, got)
		}
	}

	// No credentials: nothing changes.
	p.config(storeConfig(s3, "fallback", s3.Endpoint, ""))
	p.writeApp("v4")
	live := p.fleetLive()
	bare := base.withEnv("AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_PROFILE=", "AWS_SHARED_CREDENTIALS_FILE=")
	res = bare.expectCode(1, "deploy", "production")
	if !strings.Contains(res.stderr, "no credentials for the artifact store") || !strings.Contains(res.stderr, "AWS_ACCESS_KEY_ID") {
		t.Errorf("no credentials:\n%s", res.stderr)
	}
	if got := p.fleetLive(); got != live {
		t.Errorf("the fleet switched to %s without credentials", got)
	}

	// A profile of the shared credentials file.
	if err := os.MkdirAll(filepath.Join(p.fleet.Home, ".aws"), 0o700); err != nil {
		t.Fatal(err)
	}
	p.write("aws-credentials", "[e2e]\naws_access_key_id = "+s3.AccessKey+"\naws_secret_access_key = "+s3.SecretKey+"\n")
	if err := os.Rename(filepath.Join(p.dir, "aws-credentials"), filepath.Join(p.fleet.Home, ".aws", "credentials")); err != nil {
		t.Fatal(err)
	}
	res = base.withEnv("AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_PROFILE=e2e", "AWS_SHARED_CREDENTIALS_FILE=").mustRun("deploy", "production")
	if !strings.Contains(res.stderr, "upload from the artifact store") {
		t.Errorf("with AWS_PROFILE, host1 did not download from the store:\n%s", res.stderr)
	}
	if got := readFile(t, host1.Path(deployTo+"/current/VERSION")); got != "v4\n" {
		t.Errorf("host1 serves %q", got)
	}
}
