package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hpcgate/hpcgate/client"
)

var cmdDownload = &command{
	name:    "download",
	summary: "download every output of a job into a directory",
	args:    "ID [--out DIR] [--archive FILE]",
	desc:    "Downloads every output file of a job into the directory DIR (default ./ID), keeping their relative paths, and checks each against the SHA-256 the gateway lists. A path that is absolute or contains .. is refused. Files already in DIR at those paths are replaced (by new files, mode 0644). With --archive it writes all outputs as one tar.gz file instead (- for standard output), replacing a FILE that exists. A progress bar over the total size is shown on a terminal.",
	example: "hpcgate download 7yzixrkjsc6irydo --out results/\nhpcgate download 7yzixrkjsc6irydo --archive outputs.tar.gz",
	minArgs: 1, maxArgs: 1,
	setup: func(fs *flag.FlagSet) runFunc {
		out := fs.String("out", "", "the `DIR`ectory to write into (default ./ID)")
		archive := fs.String("archive", "", "write the outputs as one tar.gz `FILE` instead")
		return func(e *env, args []string) error {
			id := args[0]
			if *out != "" && *archive != "" {
				return &ExitError{Code: 2, Err: errors.New("download: give --out or --archive, not both")}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			if *archive != "" {
				rc, err := c.OutputsArchive(e.ctx, id)
				if err != nil {
					return err
				}
				defer rc.Close()
				if *archive == "-" {
					_, err = io.Copy(e.rawOut, rc)
					return err
				}
				bar := newProgress(e.rawErr, -1)
				n, err := writeFileAtomic(*archive, bar.Reader(rc))
				bar.Done()
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "downloaded outputs of %s (%d bytes) to %s\n", id, n, *archive)
				return nil
			}
			dir := *out
			if dir == "" {
				if _, err := checkOutputPath(id); err != nil || strings.Contains(id, "/") {
					return fmt.Errorf("download: job id %q cannot be a directory name; give --out", id)
				}
				dir = id
			}
			files, err := c.Outputs(e.ctx, id)
			if err != nil {
				return err
			}
			// Check every path before writing anything.
			paths := make([]string, len(files))
			var total int64
			for i, f := range files {
				p, err := checkOutputPath(f.Path)
				if err != nil {
					return fmt.Errorf("download %s: %w", id, err)
				}
				paths[i] = filepath.FromSlash(p)
				total += f.Size
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			bar := newProgress(e.rawErr, total)
			var bytes int64
			for i, f := range files {
				n, err := e.downloadOne(c, id, f.Path, f.SHA256, filepath.Join(dir, paths[i]), bar)
				bytes += n
				if err != nil {
					bar.Done()
					return err
				}
			}
			bar.Done()
			fmt.Fprintf(e.stdout, "downloaded %d files (%d bytes) to %s\n", len(files), bytes, dir)
			return nil
		}
	},
}

// downloadOne writes output p of job id to local, and checks its SHA-256
// against sum if the gateway gave one. It returns the bytes written.
func (e *env) downloadOne(c *client.Client, id, p, sum, local string, bar *progress) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		return 0, err
	}
	rc, _, err := c.Output(e.ctx, id, p)
	if err != nil {
		return 0, fmt.Errorf("output %s: %w", p, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := writeFileAtomic(local, io.TeeReader(bar.Reader(rc), h))
	if err != nil {
		return n, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); sum != "" && !strings.EqualFold(got, sum) {
		os.Remove(local)
		return n, fmt.Errorf("output %s: checksum mismatch: got sha256 %s, the gateway lists %s", p, got, sum)
	}
	return n, nil
}
