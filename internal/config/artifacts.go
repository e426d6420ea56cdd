package config

import (
	"net/url"
	"regexp"
	"strings"
	"unicode"
)

// Artifacts is where a deploy puts what it ships so that the hosts
// download it (artifacts.store): an S3 bucket, or any S3-compatible store.
// Each pack (what a host would be sent) is uploaded once, named by its
// SHA-256, and every host fetches it with a short-lived presigned URL.
type Artifacts struct {
	Bucket string // of store: s3://BUCKET/PREFIX
	Prefix string // keys start with it and a slash; "" for the bucket's root
	// Endpoint is the S3 API this machine uploads to, "https://host[:port]";
	// "" for Amazon S3.
	Endpoint string
	// HostsEndpoint is the one the hosts download from, when they reach
	// the store by another address (a VPC endpoint, an internal name);
	// "" for Endpoint.
	HostsEndpoint string
	Region        string // "" lets the client ask the store
	Where         string // "slipway.yml:LINE:COL" of the section
}

// Store is the store as written: s3://bucket/prefix.
func (a *Artifacts) Store() string {
	if a.Prefix == "" {
		return "s3://" + a.Bucket
	}
	return "s3://" + a.Bucket + "/" + a.Prefix
}

var artifactsSection = &section{keys: []string{"store", "endpoint", "hosts_endpoint", "region"}, label: "under artifacts:",
	example: "{store: s3://acme-deploys/shop, region: eu-central-1}"}

// bucketRE is an S3 bucket name: 3 to 63 lowercase letters, digits, dots
// and hyphens, starting and ending with a letter or digit.
var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// regionRE is a region name, as AWS and the S3-compatible stores write them.
var regionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

const storeFix = "write the bucket and an optional prefix, e.g. store: s3://acme-deploys/shop"

func (d *decoder) artifacts(f field) *Artifacts {
	fields, ok := d.fields(f.value, f.path, artifactsSection)
	if isNull(f.value) || !ok {
		return nil
	}
	a := &Artifacts{Where: d.where(f.at)}
	storeGiven := false
	for _, af := range fields {
		s, ok := d.str(af)
		if !ok {
			continue
		}
		switch af.key {
		case "store":
			storeGiven = true
			bucket, prefix, reason := parseStore(s)
			if reason != "" {
				d.fail(af.valueAt(), storeFix, "%s %s %s", af.path, quoteOrEmpty(s), reason)
				continue
			}
			a.Bucket, a.Prefix = bucket, prefix
		case "endpoint", "hosts_endpoint":
			if reason := checkEndpoint(s); reason != "" {
				d.fail(af.valueAt(), "write the S3 API's address with its scheme and nothing after the port, e.g. "+af.key+": https://s3.eu-central-1.amazonaws.com or http://10.0.0.5:9000",
					"%s %s %s", af.path, quoteOrEmpty(s), reason)
				continue
			}
			endpoint := strings.TrimSuffix(s, "/")
			if af.key == "endpoint" {
				a.Endpoint = endpoint
			} else {
				a.HostsEndpoint = endpoint
			}
		case "region":
			if !regionRE.MatchString(s) {
				d.fail(af.valueAt(), "write the bucket's region, e.g. region: eu-central-1, or leave region: out", "%s must be a region name, not %s", af.path, quoteOrEmpty(s))
				continue
			}
			a.Region = s
		}
	}
	if !storeGiven {
		d.fail(f.at, "add the bucket to upload to, e.g. store: s3://acme-deploys/shop, or remove artifacts:", "%s has no store", f.path)
	}
	return a
}

// parseStore reads s3://bucket/prefix; reason says what is wrong with it.
func parseStore(s string) (bucket, prefix, reason string) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", "must start with s3://"
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	prefix = strings.Trim(prefix, "/")
	switch {
	case !bucketRE.MatchString(bucket) || strings.Contains(bucket, ".."):
		return "", "", "does not name a bucket (3 to 63 lowercase letters, digits, dots and hyphens)"
	case strings.IndexFunc(prefix, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) || r == '\\' }) >= 0:
		return "", "", "has a space, a control character or a backslash in its prefix"
	}
	for _, part := range strings.Split(prefix, "/") {
		if prefix != "" && (part == "" || part == "." || part == "..") {
			return "", "", "has an empty, . or .. part in its prefix"
		}
	}
	return bucket, prefix, ""
}

// checkEndpoint says what is wrong with an S3 endpoint, "" when nothing.
func checkEndpoint(s string) string {
	if reason := checkURL(s); reason != "" {
		return reason
	}
	u, _ := url.Parse(s) // checkURL parsed it
	switch {
	case u.User != nil:
		return "must not hold credentials (slipway reads them from the environment or ~/.aws/credentials)"
	case strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "":
		return "must not have a path or query"
	}
	return ""
}
