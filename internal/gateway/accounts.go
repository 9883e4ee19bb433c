package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hpcgate/hpcgate/internal/account"
	"github.com/hpcgate/hpcgate/internal/config"
	"github.com/hpcgate/hpcgate/internal/sched/localsched"
)

// prepareAccounts returns the work root (made, never inside dataDir) and
// the resolver of users' accounts. Accounts other than the gateway's own
// need root.
func prepareAccounts(cfg *config.Config, dataDir string) (string, *account.Resolver, error) {
	acc, err := account.New(account.Options{Mode: cfg.Accounts.Mode, Map: cfg.Accounts.Map, MinUID: cfg.Accounts.MinUID, MaxUID: cfg.Accounts.MaxUID})
	if err != nil {
		return "", nil, err
	}
	root := os.Geteuid() == 0
	if acc.Mode() != account.Single && !root {
		return "", nil, fmt.Errorf("accounts.mode %s runs jobs as users' accounts, which needs the gateway to run as root", acc.Mode())
	}
	work := cfg.WorkRoot
	switch {
	case work != "":
	case root:
		work = "/var/tmp/hpcgate-jobs"
	default:
		work = filepath.Join(os.TempDir(), "hpcgate-jobs-"+strconv.Itoa(os.Geteuid()))
	}
	if work, err = filepath.Abs(work); err != nil {
		return "", nil, err
	}
	if work == dataDir || strings.HasPrefix(work, dataDir+string(filepath.Separator)) {
		return "", nil, fmt.Errorf("work_root %s is inside the data directory %s: jobs must not reach the gateway's data", work, dataDir)
	}
	// Accounts must reach their own job's directory below it, and never
	// list the others (0711); the gateway's own jobs need nothing more
	// than 0700.
	mode := os.FileMode(0o700)
	if acc.Mode() != account.Single {
		mode = 0o711
	}
	if err := os.MkdirAll(work, mode); err != nil {
		return "", nil, fmt.Errorf("work_root: %w", err)
	}
	if fi, err := os.Stat(work); err != nil {
		return "", nil, fmt.Errorf("work_root: %w", err)
	} else if fi.Mode().Perm() != mode {
		if err := os.Chmod(work, mode); err != nil {
			return "", nil, fmt.Errorf("work_root: %w", err)
		}
	}
	return work, acc, nil
}

// sandbox returns the local executor's sandbox for the jobs that run as
// the gateway's own account, or nil (local.sandbox off, or bwrap missing
// or not working here: then the server says so, once).
func (g *Gateway) sandbox(dataDir string) *localsched.Sandbox {
	if g.cfg.Local.Sandbox == "off" {
		if g.accounts.Mode() == account.Single {
			g.log.Warn("local.sandbox is off: local jobs run as the gateway's own account and can read its data directory (database, admin token, other users' files)", "data_dir", dataDir)
		}
		return nil
	}
	sb, err := localsched.FindSandbox()
	if err != nil {
		if g.accounts.Mode() == account.Single {
			g.log.Warn("no sandbox for local jobs: they run as the gateway's own account and can read its data directory (database, admin token, other users' files); install bubblewrap (bwrap), or run as root with accounts (docs/operations.md)", "data_dir", dataDir, "err", err)
		}
		return nil
	}
	return sb
}
