package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/hpcgate/hpcgate/client"
)

var cmdUpload = &command{
	name:    "upload",
	summary: "upload a local file to your files on the gateway",
	args:    "LOCAL [REMOTE]",
	desc:    "Uploads the local file LOCAL (- for standard input) to your files on the gateway at path REMOTE (default the base name of LOCAL), where jobs can take it as an input with 'hpcgate submit --input NAME=REMOTE'. A file already at REMOTE is replaced. It checks that the SHA-256 the gateway computed matches the one of the bytes read. Files of 64 MiB and more go straight to the gateway's object store in parallel parts when it is S3 (each part checked against the store's MD5). A progress bar is shown on a terminal. Inside a job (with the job's own token) the file goes to the job's own space, never to its owner's files: its children take it as --input NAME=job:$HPCGATE_JOB_ID/files/REMOTE.",
	example: "hpcgate upload ./book.txt texts/book.txt\ncurl -s https://example.org/data | hpcgate upload - data/latest.csv\nhpcgate upload part.txt part.txt && hpcgate submit wordcount --input text=job:$HPCGATE_JOB_ID/files/part.txt   # in a job",
	minArgs: 1, maxArgs: 2,
	setup: func(fs *flag.FlagSet) runFunc {
		stream := fs.Bool("stream", false, "send a large file through the gateway even when its object store could take it directly")
		return func(e *env, args []string) error {
			local := args[0]
			remote := ""
			if len(args) > 1 {
				remote = args[1]
			} else if local != "-" {
				remote = filepath.Base(local)
			} else {
				return &ExitError{Code: 2, Err: errors.New("upload -: name the REMOTE path")}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			var r io.Reader = e.stdin
			size := int64(-1)
			if local != "-" {
				f, err := os.Open(local)
				if err != nil {
					return err
				}
				defer f.Close()
				st, err := f.Stat()
				if err != nil {
					return err
				}
				if st.IsDir() {
					return fmt.Errorf("%s is a directory", local)
				}
				if st.Mode().IsRegular() {
					size = st.Size()
				}
				r = f
			}
			if err := checkRemote("upload", "REMOTE", remote); err != nil {
				return err
			}
			if size >= directUploadMin && !*stream {
				// Large files go straight to the object store when it
				// presigns, in parallel parts; else they stream through.
				bar := newProgress(e.rawErr, size)
				info, err := c.UploadFile(e.ctx, remote, r, size, &client.UploadOptions{Progress: bar.Add})
				bar.Done()
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "uploaded %s (%d bytes, sha256 %s)\n", firstNonEmpty(info.Path, remote), info.Size, info.SHA256)
				return nil
			}
			h := sha256.New()
			cr := &countReader{r: io.TeeReader(r, h)}
			bar := newProgress(e.rawErr, size)
			info, err := c.PutFile(e.ctx, remote, bar.Reader(cr), size)
			bar.Done()
			if err != nil {
				return err
			}
			sum := hex.EncodeToString(h.Sum(nil))
			if info.SHA256 == "" {
				fmt.Fprintf(e.stderr, "warning: the gateway did not report a checksum of %s; not verified\n", remote)
			} else if !strings.EqualFold(info.SHA256, sum) {
				return fmt.Errorf("upload %s: checksum mismatch: sent sha256 %s, gateway stored %s", remote, sum, info.SHA256)
			}
			if info.Size != cr.n {
				return fmt.Errorf("upload %s: size mismatch: sent %d bytes, gateway stored %d", remote, cr.n, info.Size)
			}
			fmt.Fprintf(e.stdout, "uploaded %s (%d bytes, sha256 %s)\n", firstNonEmpty(info.Path, remote), info.Size, sum)
			return nil
		}
	},
}

// directUploadMin is the size from which upload tries a presigned
// multipart upload.
const directUploadMin = 64 << 20

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

var cmdFiles = &command{
	name:    "files",
	summary: "list your files on the gateway",
	args:    "[PREFIX] [--json]",
	desc:    "Lists your files on the gateway whose path starts with PREFIX (default all): their path, size and when they were last written.",
	example: "hpcgate files texts/",
	maxArgs: 1,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print the JSON list")
		return func(e *env, args []string) error {
			prefix := ""
			if len(args) > 0 {
				prefix = args[0]
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			files, err := c.Files(e.ctx, prefix)
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(e.stdout, nonNil(files))
			}
			tw := newTable(e.stdout)
			tw.row("PATH", "SIZE", "MODIFIED")
			for _, f := range files {
				mod := "-"
				if !f.Modified.IsZero() {
					mod = f.Modified.Local().Format("2006-01-02 15:04:05")
				}
				tw.row(f.Path, formatBytes(f.Size), mod)
			}
			return tw.Flush()
		}
	},
}

var cmdRm = &command{
	name:    "rm",
	summary: "delete your files on the gateway",
	args:    "PATH...",
	desc:    "Deletes each of your files on the gateway given. It goes on after a file it cannot delete and fails at the end if any could not be deleted.",
	example: "hpcgate rm texts/book.txt texts/old.txt",
	minArgs: 1, maxArgs: -1,
	setup: func(fs *flag.FlagSet) runFunc {
		return func(e *env, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			return e.forEach(args, "removed", func(p string) error {
				if err := checkRemote("rm", "PATH", p); err != nil {
					return err
				}
				return c.DeleteFile(e.ctx, p)
			})
		}
	},
}

var cmdCat = &command{
	name:    "cat",
	summary: "write one of your files to standard output",
	args:    "PATH",
	desc:    "Writes one of your files on the gateway to standard output.",
	example: "hpcgate cat texts/book.txt | head",
	minArgs: 1, maxArgs: 1,
	setup: func(fs *flag.FlagSet) runFunc {
		return func(e *env, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := checkRemote("cat", "PATH", args[0]); err != nil {
				return err
			}
			rc, _, err := c.GetFile(e.ctx, args[0], 0)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(e.rawOut, rc)
			return err
		}
	},
}

var cmdFetch = &command{
	name:    "fetch",
	summary: "download one of your files",
	args:    "REMOTE [LOCAL]",
	desc:    "Downloads one of your files on the gateway to the local path LOCAL (default the base name of REMOTE in the current directory; - for standard output). A LOCAL that is a directory (., results/) gets the file under the base name of REMOTE. An existing file is replaced only once the download is complete. A progress bar is shown on a terminal.",
	example: "hpcgate fetch texts/book.txt ./book.txt\nhpcgate fetch texts/book.txt .",
	minArgs: 1, maxArgs: 2,
	setup: func(fs *flag.FlagSet) runFunc {
		return func(e *env, args []string) error {
			remote := args[0]
			local := path.Base(remote)
			if len(args) > 1 {
				local = args[1]
			}
			if local == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("fetch %s: name the LOCAL path", remote)}
			}
			if err := checkRemote("fetch", "REMOTE", remote); err != nil {
				return err
			}
			// Into a directory under the remote's name; a directory that
			// is not there is said before anything is downloaded.
			if local != "-" {
				if st, err := os.Stat(local); err == nil && st.IsDir() {
					local = filepath.Join(local, path.Base(remote))
				} else if strings.HasSuffix(local, "/") || strings.HasSuffix(local, string(filepath.Separator)) {
					return fmt.Errorf("fetch: the directory %s does not exist", local)
				} else if err := dirExists(filepath.Dir(local)); err != nil {
					return fmt.Errorf("fetch: %w", err)
				}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			rc, size, err := c.GetFile(e.ctx, remote, 0)
			if err != nil {
				return err
			}
			defer rc.Close()
			if local == "-" {
				_, err = io.Copy(e.rawOut, rc)
				return err
			}
			bar := newProgress(e.rawErr, size)
			n, err := writeFileAtomic(local, bar.Reader(rc))
			bar.Done()
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "fetched %s (%d bytes) to %s\n", remote, n, local)
			return nil
		}
	},
}

// writeFileAtomic writes r to a temporary file next to name and renames
// it to name once complete. It returns the bytes written.
func writeFileAtomic(name string, r io.Reader) (int64, error) {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".*.part")
	if err != nil {
		if derr := dirExists(dir); derr != nil {
			return 0, fmt.Errorf("write %s: %w", name, derr)
		}
		return 0, fmt.Errorf("write %s: %w", name, err)
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
		return n, fmt.Errorf("write %s: %w", name, err)
	}
	return n, nil
}

// dirExists says, in the user's words, that dir is not a directory there
// is: an error naming the temporary file it would have held says less.
func dirExists(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("the directory %s does not exist", dir)
	case err == nil && !st.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// checkRemote refuses a path on the gateway with an empty, . or ..
// segment, naming the argument it came from (what, of command cmd): the
// client would refuse it naming the API's path instead.
func checkRemote(cmd, what, p string) error {
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return &ExitError{Code: 2, Err: fmt.Errorf("%s: %s %q may not have an empty, . or .. part: name a path such as texts/book.txt", cmd, what, p)}
		}
	}
	return nil
}
