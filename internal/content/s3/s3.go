// Package s3 is a content.Backend on S3-compatible object storage
// (AWS S3, MinIO, versitygw, Ceph RGW), through minio-go.
//
// Objects are the backend's keys under Config.Prefix in one bucket. Every
// node of a region may use the same bucket at once: nothing about an
// upload lives on the node that wrote it.
//
// Writes stream. A staging object is a multipart upload plus a tail:
//
//	bytes:   [ part 1 | part 2 | ... | part n | tail ]
//	         each part PartSize bytes, uploaded  the rest (< PartSize),
//	         as soon as it is full               in memory while writing
//
// so memory per writer is one part. Checkpoint stores the tail as an
// object of its own (uploads/<id>/data.tail.<random>) and returns the
// upload id, the parts with their ETags and the tail's key: the state
// any node resumes from. Parts or tails written after the checkpoint a
// writer resumes from are ignored (only the listed parts are completed),
// and S3 refuses to complete a part whose ETag changed, so two writers
// racing on one session cannot produce a blob of mixed bytes unnoticed.
//
// Commit completes the multipart upload (or PUTs a blob smaller than a
// part in one request). A multipart upload completes at the key it was
// started for: with WriterOptions.Target (the digest was declared: a
// monolithic upload, replication, read-through) that is the blob's own key
// and nothing moves; otherwise (a session whose digest comes with its
// last request) it completes at the staging key and is copied server side
// to the blob's key, then removed. Incomplete multipart uploads left by a
// dead process are aborted by Sweep once older than the caller's cutoff.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/georeg/georeg/internal/content"
)

// Config is where the blobs are.
type Config struct {
	// Endpoint is the S3 API's base URL, http(s)://host[:port].
	Endpoint string `yaml:"endpoint"`
	// Bucket holds the region's blobs; one bucket per region.
	Bucket string `yaml:"bucket"`
	// Region is the bucket's region (default us-east-1).
	Region string `yaml:"region"`
	// Prefix is put before every key, to share a bucket with other data.
	Prefix string `yaml:"prefix"`
	// AccessKey and SecretKey authenticate (AWS signature v4).
	AccessKey string `yaml:"accessKey"`
	SecretKey string `yaml:"secretKey"`
	// PartSize is the size of each multipart upload part: the memory one
	// upload holds (default 16 MiB; S3 needs at least 5 MiB, and a blob
	// has at most 10,000 parts: 160 GiB at the default).
	PartSize int64 `yaml:"partSize"`
	// Redirect makes blob GETs answer 307 to a presigned URL of the
	// object, so the bytes go from the object store to the client.
	Redirect bool `yaml:"redirect"`
	// RedirectExpiry is how long a presigned URL is good for (default 5m).
	RedirectExpiry time.Duration `yaml:"redirectExpiry"`
	// CreateBucket creates the bucket at start when it does not exist.
	CreateBucket bool `yaml:"createBucket"`
}

// Defaults.
const (
	DefaultPartSize = 16 << 20
	minPartSize     = 5 << 20
)

// WithDefaults returns c with zero fields set.
func (c Config) WithDefaults() Config {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.RedirectExpiry == 0 {
		c.RedirectExpiry = 5 * time.Minute
	}
	return c
}

// Validate reports every problem with its field.
func (c Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		errs = append(errs, fmt.Errorf("endpoint: %q must be http(s)://host[:port]", c.Endpoint))
	}
	if c.Bucket == "" {
		errs = append(errs, errors.New("bucket: give the bucket of this region's blobs"))
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		errs = append(errs, errors.New("accessKey and secretKey: give both or neither"))
	}
	if c.PartSize != 0 && c.PartSize < minPartSize {
		errs = append(errs, fmt.Errorf("partSize: %d is below S3's minimum of 5 MiB", c.PartSize))
	}
	if c.RedirectExpiry < 0 || c.RedirectExpiry > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("redirectExpiry: %s must be between 0 and 7 days", c.RedirectExpiry))
	}
	if strings.HasPrefix(c.Prefix, "/") {
		errs = append(errs, fmt.Errorf("prefix: %q must not start with /", c.Prefix))
	}
	return errors.Join(errs...)
}

// maxIdleConns bounds the connections to the object store kept open
// between requests.
const maxIdleConns = 256

// Backend keeps each key as an object.
type Backend struct {
	cfg       Config
	core      minio.Core
	client    *minio.Client
	transport *http.Transport
	bufs      sync.Pool // part buffers (PartSize)
	small     sync.Pool // first buffers (smallBuf): most blobs fit
}

// Close closes the backend's idle connections to the object store.
func (b *Backend) Close() error {
	b.transport.CloseIdleConnections()
	return nil
}

// Open connects to the bucket (creating it with CreateBucket) and checks
// it answers.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.Endpoint)
	// Connections to the one endpoint are kept for as many requests as a
	// node runs at once (100 concurrent small pushes are 100 PUTs): with
	// fewer kept, every burst dialed most of its connections again, a
	// tenth of a node's CPU in small pushes (docs/performance.md).
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = maxIdleConns, maxIdleConns
	opts := &minio.Options{Secure: u.Scheme == "https", Region: cfg.Region, BucketLookup: minio.BucketLookupPath, Transport: tr}
	if cfg.AccessKey != "" {
		opts.Creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	}
	core, err := minio.NewCore(u.Host, opts)
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", cfg.Endpoint, err)
	}
	b := &Backend{cfg: cfg, core: *core, client: core.Client, transport: tr}
	b.bufs.New = func() any { p := make([]byte, 0, cfg.PartSize); return &p }
	b.small.New = func() any { p := make([]byte, 0, min(smallBuf, cfg.PartSize)); return &p }
	ok, err := b.client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3 bucket %s at %s: %w", cfg.Bucket, cfg.Endpoint, err)
	}
	if !ok {
		if !cfg.CreateBucket {
			return nil, fmt.Errorf("s3 bucket %s does not exist at %s (create it, or set createBucket)", cfg.Bucket, cfg.Endpoint)
		}
		if err := b.client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region}); err != nil {
			return nil, fmt.Errorf("create s3 bucket %s: %w", cfg.Bucket, err)
		}
	}
	return b, nil
}

// Config returns the backend's configuration, defaults applied.
func (b *Backend) Config() Config { return b.cfg }

func (b *Backend) object(key string) (string, error) {
	if err := content.CheckKey(key); err != nil {
		return "", err
	}
	return b.cfg.Prefix + key, nil
}

func notFound(err error) error {
	r := minio.ToErrorResponse(err)
	if r.Code == "NoSuchKey" || r.Code == "NoSuchUpload" || r.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %v", content.ErrNotFound, err)
	}
	return err
}

// isStaging reports a session's staging key (uploads/<id>/data), which is
// never an object of its own until it is committed.
func isStaging(key string) bool {
	return strings.HasPrefix(key, "uploads/") && strings.HasSuffix(key, "/data")
}

// Stat implements content.Backend.
func (b *Backend) Stat(ctx context.Context, key string) (int64, error) {
	obj, err := b.object(key)
	if err != nil {
		return 0, err
	}
	info, err := b.client.StatObject(ctx, b.cfg.Bucket, obj, minio.StatObjectOptions{})
	if err != nil {
		return 0, notFound(err)
	}
	return info.Size, nil
}

// Reader implements content.Backend: a GET with a Range from offset.
func (b *Backend) Reader(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	obj, err := b.object(key)
	if err != nil {
		return nil, err
	}
	var opts minio.GetObjectOptions
	if offset > 0 {
		if err := opts.SetRange(offset, 0); err != nil {
			return nil, err
		}
	}
	rc, _, _, err := b.core.GetObject(ctx, b.cfg.Bucket, obj, opts)
	if err == nil {
		return rc, nil
	}
	if minio.ToErrorResponse(err).Code == "InvalidRange" {
		if size, serr := b.Stat(ctx, key); serr == nil && offset >= size {
			return io.NopCloser(bytes.NewReader(nil)), nil // nothing past the end
		}
	}
	err = notFound(err)
	if errors.Is(err, content.ErrNotFound) && isStaging(key) {
		return nil, content.ErrNotReadable
	}
	return nil, err
}

// Move implements content.Backend: a server-side copy (multipart for a
// large object), then a delete.
func (b *Backend) Move(ctx context.Context, from, to string) error {
	src, err := b.object(from)
	if err != nil {
		return err
	}
	dst, err := b.object(to)
	if err != nil {
		return err
	}
	return b.move(ctx, src, dst)
}

// move copies bucket key src to dst server side, then removes src.
func (b *Backend) move(ctx context.Context, src, dst string) error {
	if _, err := b.client.ComposeObject(ctx, minio.CopyDestOptions{Bucket: b.cfg.Bucket, Object: dst},
		minio.CopySrcOptions{Bucket: b.cfg.Bucket, Object: src}); err != nil {
		return notFound(err)
	}
	return b.client.RemoveObject(ctx, b.cfg.Bucket, src, minio.RemoveObjectOptions{})
}

// Delete implements content.Backend. A staging key takes every object of
// its session (tails, a sealed copy) and its incomplete multipart uploads.
func (b *Backend) Delete(ctx context.Context, key string) error {

	obj, err := b.object(key)
	if err != nil {
		return err
	}
	if !isStaging(key) {
		err := b.client.RemoveObject(ctx, b.cfg.Bucket, obj, minio.RemoveObjectOptions{})
		if err != nil && !errors.Is(notFound(err), content.ErrNotFound) {
			return err
		}
		return nil
	}
	dir := strings.TrimSuffix(obj, "data")
	if err := b.removePrefix(ctx, dir); err != nil {
		return err
	}
	for _, up := range b.incomplete(ctx, obj) {
		if up.Err != nil {
			return up.Err
		}
		if up.Key != obj {
			continue // another session's id that starts with this one's
		}
		if err := b.core.AbortMultipartUpload(ctx, b.cfg.Bucket, up.Key, up.UploadID); err != nil && !errors.Is(notFound(err), content.ErrNotFound) {
			return err
		}
	}
	return nil
}

// incomplete lists the incomplete multipart uploads under prefix (a
// bucket key), the listing drained whole: minio-go's producer goroutine
// blocks on a listing left midway.
func (b *Backend) incomplete(ctx context.Context, prefix string) []minio.ObjectMultipartInfo {
	var out []minio.ObjectMultipartInfo
	for up := range b.client.ListIncompleteUploads(ctx, b.cfg.Bucket, prefix, true) {
		out = append(out, up)
	}
	return out
}

// removePrefix removes every object under prefix (a bucket key).
func (b *Backend) removePrefix(ctx context.Context, prefix string) error {

	for o := range b.client.ListObjectsIter(ctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return o.Err
		}
		if err := b.client.RemoveObject(ctx, b.cfg.Bucket, o.Key, minio.RemoveObjectOptions{}); err != nil && !errors.Is(notFound(err), content.ErrNotFound) {
			return err
		}
	}
	return nil
}

// Walk implements content.Backend. Under "uploads/" it lists sessions'
// incomplete multipart uploads too (as their staging key, size 0, dated
// when they began).
func (b *Backend) Walk(ctx context.Context, prefix string, fn func(key string, size int64, modified time.Time) error) error {

	for o := range b.client.ListObjectsIter(ctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: b.cfg.Prefix + prefix, Recursive: true}) {
		if o.Err != nil {
			return o.Err
		}
		if err := fn(strings.TrimPrefix(o.Key, b.cfg.Prefix), o.Size, o.LastModified); err != nil {
			return err
		}
	}
	if !strings.HasPrefix(prefix, "uploads") && !strings.HasPrefix("uploads/", prefix) {
		return nil
	}
	for _, up := range b.incomplete(ctx, b.cfg.Prefix+prefix) {
		if up.Err != nil {
			return up.Err
		}
		key := strings.TrimPrefix(up.Key, b.cfg.Prefix)
		if !strings.HasPrefix(key, "uploads/") {
			continue
		}
		if err := fn(key, 0, up.Initiated); err != nil {
			return err
		}
	}
	return nil
}

// Sweep implements content.Sweeper: incomplete multipart uploads begun
// before cutoff at a blob's key (what a monolithic upload or a fetch left
// when its process died) are aborted. Sessions' are the caller's: they
// are listed by Walk and go with their session.
func (b *Backend) Sweep(ctx context.Context, cutoff time.Time) error {

	for _, up := range b.incomplete(ctx, b.cfg.Prefix+"blobs/") {
		if up.Err != nil {
			return up.Err
		}
		if up.Initiated.Before(cutoff) {
			if err := b.core.AbortMultipartUpload(ctx, b.cfg.Bucket, up.Key, up.UploadID); err != nil && !errors.Is(notFound(err), content.ErrNotFound) {
				return err
			}
		}
	}
	return nil
}

// Check implements content.Checker: the bucket answers.
func (b *Backend) Check(ctx context.Context) error {
	ok, err := b.client.BucketExists(ctx, b.cfg.Bucket)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("bucket %s is gone", b.cfg.Bucket)
	}
	return nil
}

// RedirectURL implements content.Redirector: a presigned GET of the
// object, good for expiry.
func (b *Backend) RedirectURL(ctx context.Context, key string, expiry time.Duration) (string, error) {
	obj, err := b.object(key)
	if err != nil {
		return "", err
	}
	u, err := b.client.PresignedGetObject(ctx, b.cfg.Bucket, obj, expiry, nil)
	if err != nil {
		return "", err
	}
	return u.String(), nil
}
