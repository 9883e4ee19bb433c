package agent

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
)

// noLinkBelow reports an error when a component of rel (a clean relative
// path) below root is a symbolic link. The job's command can make links in
// its working directory (in a container too: it is mounted there), and
// the agent must not follow one out of it when it uploads an output or
// mounts an input: the link could name the gateway's data or another
// job's files. Checked when no step of the job runs.
func noLinkBelow(root, rel string) error {
	p := root
	for _, seg := range strings.Split(filepath.ToSlash(rel), "/") {
		if seg == ".." {
			return fmt.Errorf("%s leaves its directory", rel)
		}
		p = filepath.Join(p, seg)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symbolic link", rel)
		}
	}
	return nil
}

// mkdirBelow makes the directory rel (a clean relative path) below root,
// with its parents (mode 0755), without following a link on the way: an
// earlier step may have put one where a directory of a task's is to be.
func mkdirBelow(root, rel string) error {
	p := root
	for _, seg := range strings.Split(filepath.ToSlash(rel), "/") {
		if seg == "" || seg == "." {
			continue
		}
		if seg == ".." {
			return fmt.Errorf("%s leaves its directory", rel)
		}
		p = filepath.Join(p, seg)
		if err := os.Mkdir(p, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory (a symbolic link?)", rel)
		}
	}
	return nil
}

// writeBelow writes the file rel below root (its directories made with
// mkdirBelow), not through a link.
func writeBelow(root, rel string, data []byte) error {
	if err := mkdirBelow(root, filepath.Dir(rel)); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(root, rel), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// createBelow creates the file rel below root for writing, anew: whatever
// was there (a device node, a FIFO, a link an earlier step made) is
// removed first, and no link is followed on the way.
func createBelow(root, rel string) (*os.File, error) {
	if err := mkdirBelow(root, filepath.Dir(rel)); err != nil {
		return nil, err
	}
	p := filepath.Join(root, rel)
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	return os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
}

// openRegularBelow opens the regular file rel below root for reading,
// without following a link and refusing anything else (a device node, a
// FIFO that would block the agent), and returns it with its FileInfo.
func openRegularBelow(root, rel string) (*os.File, os.FileInfo, error) {
	if err := noLinkBelow(root, rel); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(filepath.Join(root, rel), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s is not a regular file", rel)
	}
	if err := syscall.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// globBelow returns the paths below root (relative, slash-separated, in
// order) that match pattern, a clean relative path.Match pattern, as
// filepath.Glob would, but without following a symbolic link: a
// directory on the way that is a link is not read (the job's command may
// point one at the node's /etc, or at the gateway's data, and the agent
// runs outside its sandbox). A match may itself be a link; its reader
// checks (openRegularBelow).
func globBelow(root, pattern string) ([]string, error) {
	segs := strings.Split(filepath.ToSlash(pattern), "/")
	for _, seg := range segs {
		if _, err := filepath.Match(seg, ""); err != nil {
			return nil, fmt.Errorf("pattern %q: %w", pattern, err)
		}
	}
	if slices.Contains(segs, "..") {
		return nil, nil // nothing of root's
	}
	cur := []string{""}
	for i, seg := range segs {
		last := i == len(segs)-1
		var next []string
		for _, dir := range cur {
			if dir != "" {
				if fi, err := os.Lstat(filepath.Join(root, dir)); err != nil || !fi.IsDir() {
					continue // a link, a file, or gone
				}
			}
			if !strings.ContainsAny(seg, `*?[\`) {
				if _, err := os.Lstat(filepath.Join(root, dir, seg)); err == nil {
					next = append(next, path.Join(dir, seg))
				}
				continue
			}
			ents, err := os.ReadDir(filepath.Join(root, dir))
			if err != nil {
				continue
			}
			for _, e := range ents {
				if ok, _ := filepath.Match(seg, e.Name()); ok && (last || e.IsDir()) {
					next = append(next, path.Join(dir, e.Name()))
				}
			}
		}
		cur = next
	}
	sort.Strings(cur)
	return cur, nil
}
