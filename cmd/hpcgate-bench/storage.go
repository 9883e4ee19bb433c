package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/hpcgate/hpcgate/client"
	"github.com/hpcgate/hpcgate/internal/blob/s3blob"
)

// storage measures the production backends against the embedded ones and
// against the S3 server itself, in one run: jobs accepted per second on
// PostgreSQL and on SQLite; and uploads of each size through the gateway
// (streamed), as a presigned multipart upload, and straight to the S3
// server with the same client library, with the server's RSS growth.
func storage(bin, pgURL, s3URL string, sizes []int64, jobs, clients int) error {
	if os.Getenv("AWS_ACCESS_KEY_ID") == "" {
		os.Setenv("AWS_ACCESS_KEY_ID", "hpcgate")
		os.Setenv("AWS_SECRET_ACCESS_KEY", "hpcgate-secret")
	}
	dir, err := os.MkdirTemp("", "hpcgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var b [5]byte
	rand.Read(b[:])
	schema := "bench_" + hex.EncodeToString(b[:])
	if out, err := exec.Command("psql", pgURL, "-qc", "CREATE SCHEMA "+schema).CombinedOutput(); err != nil {
		return fmt.Errorf("create schema: %v: %s", err, out)
	}
	defer exec.Command("psql", pgURL, "-qc", "DROP SCHEMA "+schema+" CASCADE").Run()
	pu, _ := url.Parse(pgURL)
	q := pu.Query()
	q.Set("search_path", schema)
	pu.RawQuery = q.Encode()
	su, _ := url.Parse(s3URL)
	su.Path = "/" + schema

	pg, err := startServer(bin, filepath.Join(dir, "pg"), "--database", pu.String(), "--objects", su.String())
	if err != nil {
		return err
	}
	defer pg.stop()
	lite, err := startServer(bin, filepath.Join(dir, "sqlite"))
	if err != nil {
		return err
	}
	fmt.Printf("### Jobs accepted (held), %d clients over TLS: PostgreSQL vs SQLite, same run\n\n| database | jobs | jobs/s | p50 | p99 |\n|---|---|---|---|---|\n", clients)
	for _, x := range []struct {
		name string
		s    *server
	}{{"PostgreSQL", pg}, {"SQLite", lite}} {
		rate, p50, p99, err := accept(x.s, jobs, clients)
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %d | **%.0f** | %v | %v |\n", x.name, jobs, rate, p50, p99)
	}
	lite.stop()
	fmt.Println()

	ctx := context.Background()
	c, err := pg.client()
	if err != nil {
		return err
	}
	direct, err := s3blob.Open(su.String(), os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"))
	if err != nil {
		return err
	}
	fmt.Printf("### Uploads to S3 (versitygw on this machine): through the gateway, presigned multipart, and straight to S3 with the same client library\n\n")
	fmt.Printf("| size | gateway, streamed MB/s | presigned multipart MB/s | direct S3 PUT MB/s | gateway / direct | server RSS growth (streamed) |\n|---|---|---|---|---|---|\n")
	for _, size := range sizes {
		src := filepath.Join(dir, "up.bin")
		if err := makeFile(src, size); err != nil {
			return err
		}
		mb := float64(size) / 1e6
		timed := func(fn func(f *os.File) error) (float64, error) {
			f, err := os.Open(src)
			if err != nil {
				return 0, err
			}
			defer f.Close()
			t0 := time.Now()
			if err := fn(f); err != nil {
				return 0, err
			}
			return mb / time.Since(t0).Seconds(), nil
		}
		d, err := timed(func(f *os.File) error { _, err := direct.Put(ctx, "bench/direct.bin", f); return err })
		if err != nil {
			return fmt.Errorf("direct: %w", err)
		}
		before, _ := pg.rss()
		pg.resetPeak()
		g, err := timed(func(f *os.File) error { _, err := c.PutFile(ctx, "bench/streamed.bin", f, size); return err })
		if err != nil {
			return fmt.Errorf("streamed: %w", err)
		}
		_, peak := pg.rss()
		m, err := timed(func(f *os.File) error {
			_, err := c.UploadFile(ctx, "bench/multipart.bin", f, size, &client.UploadOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("multipart: %w", err)
		}
		fmt.Printf("| %d MiB | **%.0f** | %.0f | %.0f | %.2f | %d MiB |\n", size>>20, g, m, d, g/d, max(0, peak-before)>>20)
		os.Remove(src)
	}
	fmt.Println()
	return nil
}
