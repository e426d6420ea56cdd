// Package store is slipway's client of an S3-compatible object store
// (artifacts.store in slipway.yml), through minio-go. A deploy keeps there
// what it would otherwise stream to every host: each object is named by the
// SHA-256 of its content, so it is uploaded once, whatever the number of
// hosts or deploys that use it, and the hosts download it with a
// presigned URL, verifying that checksum.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/slipway-deploy/slipway/internal/config"
)

// Store is a bucket and a prefix in an object store.
type Store struct {
	client   *minio.Client // through artifacts.endpoint: what this machine talks to
	bucket   string
	prefix   string
	location string // s3://bucket/prefix, for messages

	creds         *credentials.Credentials
	region        string // as configured; "" to ask the store
	hostsEndpoint string // "" for the client's

	presignOnce sync.Once
	presigner   *minio.Client // for the URLs handed to hosts: their endpoint, a known region
	presignErr  error
}

// ErrNoCredentials says that neither the environment nor the AWS profile
// holds credentials for the store.
var ErrNoCredentials = errors.New("no credentials for the artifact store: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), " +
	"or put them in ~/.aws/credentials (the profile AWS_PROFILE names, default otherwise)")

// awsEndpoint is where a store without artifacts.endpoint is: Amazon S3.
const awsEndpoint = "https://s3.amazonaws.com"

// maxRetries bounds the attempts of one request: a store that does not
// answer must not hold a deploy for minutes (minio-go's default is 10).
const maxRetries = 3

// askTimeout bounds a question to the store (is a pack there, which
// region is the bucket in), retries included: one that accepts the
// connection and never answers would hold every host, locked, for
// minutes. An upload is not bounded by it: a large pack over a slow
// uplink takes what it takes. A variable for tests.
var askTimeout = 20 * time.Second

// Open makes the client of the store cfg describes, with credentials from
// the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN) or else from the AWS shared credentials file
// (~/.aws/credentials or AWS_SHARED_CREDENTIALS_FILE, profile AWS_PROFILE
// or default). It sends no request: the first Stat says whether the store
// can be reached.
func Open(cfg *config.Artifacts) (*Store, error) {
	creds := credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}})
	v, err := creds.GetWithContext(nil)
	if err != nil || v.AccessKeyID == "" || v.SecretAccessKey == "" {
		return nil, ErrNoCredentials
	}
	s := &Store{bucket: cfg.Bucket, prefix: cfg.Prefix, location: cfg.Store(), creds: creds, region: cfg.Region}
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = awsEndpoint
	}
	if s.client, err = newClient(endpoint, cfg.Region, creds); err != nil {
		return nil, err
	}
	if cfg.HostsEndpoint != endpoint {
		s.hostsEndpoint = cfg.HostsEndpoint
	}
	return s, nil
}

func newClient(endpoint, region string, creds *credentials.Credentials) (*minio.Client, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("artifact store endpoint %s: %w", endpoint, err)
	}
	c, err := minio.New(u.Host, &minio.Options{Creds: creds, Secure: u.Scheme == "https", Region: region, MaxRetries: maxRetries})
	if err != nil {
		return nil, fmt.Errorf("artifact store endpoint %s: %w", endpoint, err)
	}
	return c, nil
}

// Location is the store as slipway.yml names it: s3://bucket/prefix.
func (s *Store) Location() string { return s.location }

// Key is the name of the object whose content has the SHA-256 sum (hex).
func (s *Store) Key(sum string) string { return path.Join(s.prefix, sum) }

// Stat says whether the object with the SHA-256 sum is in the store, and
// its size.
//
// Amazon S3 answers a lookup of an object that is not there with 403,
// not 404, to credentials that may not list the bucket (s3:ListBucket):
// a 403 counts as not found, and the upload that follows says whether
// the credentials may write (a HEAD's answer has no body to tell a
// refused key from a missing right).
func (s *Store) Stat(ctx context.Context, sum string) (size int64, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	info, err := s.client.StatObject(ctx, s.bucket, s.Key(sum), minio.StatObjectOptions{})
	if err != nil {
		if resp := minio.ToErrorResponse(err); resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden || resp.Code == "NoSuchKey" {
			return 0, false, nil
		}
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("no answer within %s", askTimeout)
		}
		return 0, false, s.explain("reading", sum, err)
	}
	return info.Size, true, nil
}

// Put uploads size bytes of r as the object with the SHA-256 sum. The
// caller has computed the sum from the very bytes r gives; the hosts check
// it again when they download them.
func (s *Store) Put(ctx context.Context, sum string, r io.Reader, size int64) error {
	_, err := s.client.PutObject(ctx, s.bucket, s.Key(sum), r, size, minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return s.explain("uploading", sum, err)
	}
	return nil
}

// PresignGet is a URL that downloads the object with the SHA-256 sum for
// ttl, without credentials: what a host is handed. It is signed here: the
// store is asked nothing, but for its bucket's region once, when
// artifacts.region does not say it.
func (s *Store) PresignGet(ctx context.Context, sum string, ttl time.Duration) (string, error) {
	s.presignOnce.Do(func() { s.presigner, s.presignErr = s.newPresigner(ctx) })
	if s.presignErr != nil {
		return "", s.explain("presigning", sum, s.presignErr)
	}
	u, err := s.presigner.PresignedGetObject(ctx, s.bucket, s.Key(sum), ttl, nil)
	if err != nil {
		return "", s.explain("presigning", sum, err)
	}
	return u.String(), nil
}

// newPresigner is the client that signs the hosts' URLs: this machine's,
// or, with hosts_endpoint, one for that address (a URL is signed for the
// host it names), which must not ask the store anything: the hosts'
// address may not be reachable from here. Its region is the configured
// one, else what this machine's client learnt from the store.
func (s *Store) newPresigner(ctx context.Context) (*minio.Client, error) {
	if s.hostsEndpoint == "" {
		return s.client, nil
	}
	region := s.region
	if region == "" {
		ctx, cancel := context.WithTimeout(ctx, askTimeout)
		defer cancel()
		var err error
		if region, err = s.client.GetBucketLocation(ctx, s.bucket); err != nil {
			if ctx.Err() == context.DeadlineExceeded {
				err = fmt.Errorf("asking the bucket's region: no answer within %s", askTimeout)
			}
			return nil, err
		}
	}
	return newClient(s.hostsEndpoint, region, s.creds)
}

// explain wraps a request's error with what was asked of which store,
// and, for the errors a user can fix, how.
func (s *Store) explain(doing, sum string, err error) error {
	what := fmt.Sprintf("%s %s in %s", doing, sum, s.location)
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchBucket":
		return fmt.Errorf("%s: the bucket %s does not exist; create it, or fix artifacts.store: %w", what, s.bucket, err)
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch":
		return fmt.Errorf("%s: the store refused these credentials; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and that they may read and write the bucket: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
