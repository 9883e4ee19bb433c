package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ensureImage makes the template's image available to the node's runtime
// from its image archive in the object store: podman and docker load it
// when they lack the image, once per node and account (a lock in the
// account's cache directory keeps two jobs from loading it together, and
// the second finds it loaded); for apptainer the archive is the image (a
// SIF file), kept in that directory and reused.
func (a *agent) ensureImage(ctx context.Context, c *containerRun, archive string, logs *shippers) error {
	exists := func() bool {
		argv := c.rt.ExistsCommand(c.base.Image)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = c.runtimeEnv()
		return cmd.Run() == nil
	}
	load := c.rt.LoadCommand("")
	if load != nil && exists() {
		return nil
	}
	dir, unlock, err := imageCache()
	if err != nil {
		return fmt.Errorf("the image cache: %w", err)
	}
	defer unlock()
	file := filepath.Join(dir, archive)
	if load == nil { // apptainer: the archive is the image
		if _, err := os.Stat(file); err != nil {
			if err := a.fetchArchive(ctx, file, archive, logs); err != nil {
				return err
			}
		}
		c.base.Image = file
		return nil
	}
	if exists() { // another job loaded it while this one waited
		return nil
	}
	if err := a.fetchArchive(ctx, file, archive, logs); err != nil {
		return err
	}
	defer os.Remove(file) // the runtime's store has it now
	argv := c.rt.LoadCommand(file)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = c.runtimeEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		return fmt.Errorf("the container runtime failed: %s could not load the image archive %s: %s", c.rt.Kind, archive, lines[len(lines)-1])
	}
	if !exists() {
		return fmt.Errorf("the image archive %s does not hold the image %s", archive, c.base.Image)
	}
	return nil
}

// fetchArchive downloads the job's image archive to file (through a
// temporary name, so that a half-written file is never taken for it).
func (a *agent) fetchArchive(ctx context.Context, file, archive string, logs *shippers) error {
	fmt.Fprintf(logs.stderr, "hpcgate agent: fetching the image archive %s to %s\n", archive, hostname())
	tmp := file + ".part"
	err := a.retry(ctx, "fetch the image archive", func(ctx context.Context) error {
		rc, _, err := a.c.JobImage(ctx, a.id)
		if err != nil {
			return err
		}
		defer rc.Close()
		return saveTo(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, rc)
	})
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot fetch the image archive %s: %w", archive, err)
	}
	return os.Rename(tmp, file)
}

// imageCache returns this account's image cache directory on the node,
// locked until unlock is called.
func imageCache() (dir string, unlock func(), err error) {
	uid := os.Geteuid()
	dir = filepath.Join(os.TempDir(), "hpcgate-images-"+strconv.Itoa(uid))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", nil, err
	}
	if !ownDir(dir, uid) {
		return "", nil, fmt.Errorf("%s is not this account's own directory (mode 0700)", dir)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return "", nil, err
	}
	return dir, func() { f.Close() }, nil
}
