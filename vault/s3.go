package vault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Options configures an S3-compatible blob store.
type S3Options struct {
	// URL is the endpoint and bucket: https://host[:port]/bucket (http://
	// only for a store on loopback or in a private network).
	URL       string
	AccessKey string
	SecretKey string
	Region    string // empty: the store's default
	// Transport is the HTTP transport; nil: minio-go's default.
	Transport http.RoundTripper
}

// S3Blobs keeps blobs as objects <hash[:2]>/<hash> in a bucket of an
// S3-compatible object store (AWS S3, MinIO, SeaweedFS, Ceph RGW, …),
// through minio-go.
type S3Blobs struct {
	c      *minio.Client
	bucket string
}

// CheckS3Options checks o without connecting, returning the endpoint
// URL and the bucket.
func CheckS3Options(o S3Options) (*url.URL, string, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return nil, "", errors.New("vault: S3 URL must be https://host[:port]/bucket (keys go in their own settings)")
	}
	bucket := strings.Trim(u.Path, "/")
	if bucket == "" || strings.Contains(bucket, "/") {
		return nil, "", errors.New("vault: S3 URL must name exactly one bucket: https://host[:port]/bucket")
	}
	if o.AccessKey == "" || o.SecretKey == "" {
		return nil, "", errors.New("vault: S3 needs an access key and a secret key")
	}
	return u, bucket, nil
}

// NewS3Blobs returns a store on the bucket in o.URL, creating the bucket
// if it does not exist.
func NewS3Blobs(ctx context.Context, o S3Options) (*S3Blobs, error) {
	u, bucket, err := CheckS3Options(o)
	if err != nil {
		return nil, err
	}
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(o.AccessKey, o.SecretKey, ""),
		Secure: u.Scheme == "https", Region: o.Region, Transport: o.Transport, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		return nil, fmt.Errorf("vault: S3: %w", err)
	}
	ok, err := c.BucketExists(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("vault: S3 bucket %s: %w", bucket, err)
	}
	if !ok {
		if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: o.Region}); err != nil {
			return nil, fmt.Errorf("vault: S3 create bucket %s: %w", bucket, err)
		}
	}
	return &S3Blobs{c: c, bucket: bucket}, nil
}

func objectName(hash string) (string, error) {
	if !hashPattern.MatchString(hash) {
		return "", fmt.Errorf("vault: blob address %q: %w", hash, ErrInvalid)
	}
	return path.Join(hash[:2], hash), nil
}

func (s *S3Blobs) Put(ctx context.Context, hash string, size int64, r io.Reader) error {
	name, err := objectName(hash)
	if err != nil {
		return err
	}
	v := newVerifying(r, hash, size)
	_, err = s.c.PutObject(ctx, s.bucket, name, v, size, minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err == nil && v.check() != nil {
		// The client stopped reading at the size it was given: the
		// bytes after it, or a wrong hash, are found here.
		err = v.err
	}
	if err != nil {
		// The reader fails at its end when the bytes do not match: the
		// upload is aborted. Should a store have kept it anyway, it goes.
		if v.err != nil {
			_ = s.c.RemoveObject(context.WithoutCancel(ctx), s.bucket, name, minio.RemoveObjectOptions{})
			return v.err
		}
		return fmt.Errorf("vault: S3 put: %w", err)
	}
	return nil
}

func (s *S3Blobs) Get(ctx context.Context, hash string) (io.ReadCloser, error) {
	name, err := objectName(hash)
	if err != nil {
		return nil, err
	}
	// Stat first: GetObject is lazy and would report a missing object
	// only at the first read.
	if _, err := s.c.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey || minio.ToErrorResponse(err).StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("vault: blob %s: %w", hash, ErrNotFound)
		}
		return nil, fmt.Errorf("vault: S3 stat: %w", err)
	}
	o, err := s.c.GetObject(ctx, s.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("vault: S3 get: %w", err)
	}
	return o, nil
}

func (s *S3Blobs) Delete(ctx context.Context, hash string) error {
	name, err := objectName(hash)
	if err != nil {
		return err
	}
	if err := s.c.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil
		}
		return fmt.Errorf("vault: S3 delete: %w", err)
	}
	return nil
}

func (s *S3Blobs) Walk(ctx context.Context, fn func(hash string) error) error {
	for o := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			return fmt.Errorf("vault: S3 list: %w", o.Err)
		}
		if h := path.Base(o.Key); hashPattern.MatchString(h) {
			if err := fn(h); err != nil {
				return err
			}
		}
	}
	return nil
}
