package agent

import (
	"fmt"
	"os"
	"path/filepath"
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

// openBelow opens the regular file rel below root without following a
// link on the way.
func openBelow(root, rel string) (*os.File, error) {
	if err := noLinkBelow(root, rel); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(root, rel), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}
