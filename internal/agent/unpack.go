package agent

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// maxEntries bounds the files and directories one archive input unpacks to.
const maxEntries = 1_000_000

// errNotArchive reports an input marked to unpack that is no archive the
// agent knows.
var errNotArchive = errors.New("is not a .tar.gz, .tar or .zip archive")

// unpack unpacks the archive file src (.tar.gz, .tar or .zip, told by its
// first bytes) into the directory dst, which must not exist: first into a
// directory beside it, renamed to dst once complete, so that a half
// unpacked archive is never taken for a whole one. Every entry must stay
// inside dst (no absolute paths, no "..", no link that leads out), links
// between files are refused, and the whole unpacks to at most limit bytes.
func unpack(src, dst string, limit int64) error {
	tmp := dst + ".unpacking"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return err
	}
	u := &unpacker{root: root, left: limit}
	err = u.archive(src)
	if cerr := root.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// each link's own target is checked as it is made, but links
		// through links can still lead out: follow every one, as a
		// program would, through the tree as it now stands
		err = linksStayInside(tmp)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

// unpacker writes entries below root, counting bytes and entries.
type unpacker struct {
	root    *os.Root
	left    int64 // bytes still allowed
	entries int
}

func (u *unpacker) archive(src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	head, _ := br.Peek(512)
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%w: %v", errNotArchive, err)
		}
		return u.tar(tar.NewReader(zr))
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return u.tar(tar.NewReader(br))
	case bytes.HasPrefix(head, []byte("PK\x03\x04")) || bytes.HasPrefix(head, []byte("PK\x05\x06")):
		st, err := f.Stat()
		if err != nil {
			return err
		}
		zr, err := zip.NewReader(f, st.Size())
		if err != nil {
			return fmt.Errorf("%w: %v", errNotArchive, err)
		}
		return u.zip(zr)
	}
	return errNotArchive
}

func (u *unpacker) tar(tr *tar.Reader) error {
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("a damaged archive: %v", err)
		}
		switch h.Typeflag {
		case tar.TypeReg:
			err = u.file(h.Name, h.FileInfo().Mode(), tr)
		case tar.TypeDir:
			err = u.dir(h.Name)
		case tar.TypeSymlink:
			err = u.symlink(h.Name, h.Linkname)
		case tar.TypeXGlobalHeader:
			continue
		default:
			err = fmt.Errorf("%q: only files, directories and symbolic links are unpacked, not %s", h.Name, tarType(h.Typeflag))
		}
		if err != nil {
			return err
		}
	}
}

func tarType(t byte) string {
	switch t {
	case tar.TypeLink:
		return "hard links"
	case tar.TypeChar, tar.TypeBlock:
		return "devices"
	case tar.TypeFifo:
		return "named pipes"
	}
	return fmt.Sprintf("entries of type %q", t)
}

func (u *unpacker) zip(zr *zip.Reader) error {
	for _, f := range zr.File {
		mode := f.Mode()
		var err error
		switch {
		case mode.IsDir():
			err = u.dir(f.Name)
		case mode&fs.ModeSymlink != 0:
			err = u.zipLink(f)
		case mode.IsRegular():
			var rc io.ReadCloser
			if rc, err = f.Open(); err == nil {
				err = u.file(f.Name, mode, rc)
				rc.Close()
			}
		default:
			err = fmt.Errorf("%q: only files, directories and symbolic links are unpacked", f.Name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (u *unpacker) zipLink(f *zip.File) error {
	rc, err := f.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	target, err := io.ReadAll(io.LimitReader(rc, 4096))
	if err != nil {
		return err
	}
	return u.symlink(f.Name, string(target))
}

// entry checks an entry's name and counts it; "" for the archive's root.
func (u *unpacker) entry(name string) (string, error) {
	if u.entries++; u.entries > maxEntries {
		return "", fmt.Errorf("more than %d entries", maxEntries)
	}
	clean := strings.TrimSuffix(strings.TrimPrefix(name, "./"), "/")
	if clean == "" || clean == "." {
		return "", nil
	}
	if err := safeRel(clean); err != nil {
		return "", fmt.Errorf("%q: an entry outside the archive's directory", name)
	}
	return clean, nil
}

func (u *unpacker) dir(name string) error {
	p, err := u.entry(name)
	if err != nil || p == "" {
		return err
	}
	return u.root.MkdirAll(p, 0o700)
}

func (u *unpacker) file(name string, mode fs.FileMode, r io.Reader) error {
	p, err := u.entry(name)
	if err != nil {
		return err
	}
	if p == "" {
		return fmt.Errorf("%q: a file without a name", name)
	}
	if err := u.root.MkdirAll(path.Dir(p), 0o700); err != nil {
		return err
	}
	perm := fs.FileMode(0o600)
	if mode&0o100 != 0 {
		perm = 0o700
	}
	f, err := u.root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("%q: %w", name, err)
	}
	n, err := io.Copy(f, io.LimitReader(r, u.left+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%q: %w", name, err)
	}
	if u.left -= n; u.left < 0 {
		return errors.New("it unpacks to more than its template's max_unpacked_size")
	}
	return nil
}

// symlink makes a link whose target stays inside the archive's directory.
func (u *unpacker) symlink(name, target string) error {
	p, err := u.entry(name)
	if err != nil {
		return err
	}
	if p == "" {
		return fmt.Errorf("%q: a link without a name", name)
	}
	joined := path.Join(path.Dir(p), target)
	if target == "" || path.IsAbs(target) || joined == ".." || strings.HasPrefix(joined, "../") {
		return fmt.Errorf("%q: a link to %q, outside the archive's directory", name, target)
	}
	if err := u.root.MkdirAll(path.Dir(p), 0o700); err != nil {
		return err
	}
	return u.root.Symlink(target, p)
}

// linksStayInside reports an error if a symbolic link below dir leads out
// of it when followed, through whatever links lie on the way.
func linksStayInside(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if leaves(dir, filepath.ToSlash(rel)) {
			return fmt.Errorf("%q: a link that leads out of the archive's directory", filepath.ToSlash(rel))
		}
		return nil
	})
}

// leaves follows rel (slash-separated, below dir) a component at a time,
// symbolic links included, and tells whether it goes above dir on the way
// (or loops, or names an absolute path).
func leaves(dir, rel string) bool {
	todo := strings.Split(rel, "/")
	var at []string // where the walk is, below dir
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(at) == 0 {
				return true
			}
			at = at[:len(at)-1]
			continue
		}
		cur := filepath.Join(dir, filepath.Join(at...), c)
		fi, err := os.Lstat(cur)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			at = append(at, c) // a file, a directory, or nothing yet
			continue
		}
		if hops++; hops > 40 {
			return true // a loop
		}
		target, err := os.Readlink(cur)
		if err != nil || path.IsAbs(target) {
			return true
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return false
}
