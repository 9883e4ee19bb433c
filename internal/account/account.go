// Package account maps the gateway's users to the OS accounts their jobs
// run as (the config's accounts section).
//
// # Modes
//
//   - single (the default): every job runs as the gateway's own account;
//     Resolve returns nil.
//   - same-name: user alice runs as the account alice.
//   - map: an explicit table, user → account.
//
// An account must exist on this machine and have a uid of at least
// MinUID (default 1000), at most MaxUID if set, and outside the system
// ranges above (60000 to 65535: Debian's daemons, Slurm's for one, and
// nobody; 4294967294 and 4294967295), unless the map names it explicitly:
// root and system accounts are never a user's account by accident. Uids
// of directories (FreeIPA, SSSD's id mapping) lie far above 65535. Resolve is called when
// a job is submitted, so a user without an account is refused then, never
// when the job would run. Users who only administer need no account.
package account

import (
	"errors"
	"fmt"
	"math"
	"os/exec"
	"os/user"
	"strconv"
	"strings"

	"github.com/hpcgate/hpcgate/internal/sched"
)

// The modes.
const (
	Single   = "single"
	SameName = "same-name"
	Map      = "map"
)

// ErrNoAccount is returned (wrapped, in a *NoAccountError) for a user
// whose jobs have no account to run as.
var ErrNoAccount = errors.New("no account to run jobs as")

// NoAccountError says why user has no account, in words for the user.
type NoAccountError struct {
	User string
	Why  string // "has no account", "account x does not exist on the machine", ...
}

func (e *NoAccountError) Error() string {
	return fmt.Sprintf("user %s cannot run jobs here: %s", e.User, e.Why)
}

func (e *NoAccountError) Unwrap() error { return ErrNoAccount }

// Options configure a Resolver.
type Options struct {
	// Mode is Single, SameName or Map (default Single).
	Mode string
	// Map names each user's account, for Map.
	Map map[string]string
	// MinUID and MaxUID bound the uid an account may have unless Map
	// names it (default 1000, and no MaxUID).
	MinUID, MaxUID *int
}

// Resolver maps users to accounts. It is safe for concurrent use.
type Resolver struct {
	mode           string
	m              map[string]string
	minUID, maxUID int
}

// New returns a Resolver, or an error for an unknown mode or a map
// without Mode map.
func New(o Options) (*Resolver, error) {
	r := &Resolver{mode: o.Mode, m: o.Map, minUID: 1000, maxUID: math.MaxInt}
	if r.mode == "" {
		r.mode = Single
	}
	if o.MinUID != nil {
		r.minUID = *o.MinUID
	}
	if o.MaxUID != nil {
		r.maxUID = *o.MaxUID
	}
	if r.minUID < 0 || r.maxUID < r.minUID {
		return nil, fmt.Errorf("accounts: min_uid %d and max_uid %d: want 0 <= min_uid <= max_uid", r.minUID, r.maxUID)
	}
	switch r.mode {
	case Single, SameName:
		if len(o.Map) > 0 {
			return nil, fmt.Errorf("accounts.map is used only with mode %s, not %s", Map, r.mode)
		}
	case Map:
	default:
		return nil, fmt.Errorf("accounts.mode %q: want %s, %s or %s", r.mode, Single, SameName, Map)
	}
	return r, nil
}

// Mode returns the resolver's mode.
func (r *Resolver) Mode() string { return r.mode }

// Resolve returns the account user's jobs run as: nil in mode single (the
// gateway's own). It returns a *NoAccountError (ErrNoAccount) when the
// user has none, the account does not exist on this machine, or its uid
// is outside MinUID to MaxUID and the map does not name it.
func (r *Resolver) Resolve(userName string) (*sched.Account, error) {
	var name string
	explicit := false
	switch r.mode {
	case Single:
		return nil, nil
	case SameName:
		name = userName
	case Map:
		name, explicit = r.m[userName]
		if !explicit || name == "" {
			return nil, &NoAccountError{User: userName, Why: "no account is mapped to this user"}
		}
	}
	a, err := Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return nil, &NoAccountError{User: userName, Why: fmt.Sprintf("the account %s does not exist on this machine", name)}
		}
		return nil, fmt.Errorf("account of user %s: %w", userName, err)
	}
	if (a.UID < r.minUID || a.UID > r.maxUID || systemUID(a.UID)) && !explicit {
		return nil, &NoAccountError{User: userName, Why: fmt.Sprintf("the account %s is a system account (uid %d)", name, a.UID)}
	}
	return a, nil
}

// systemUID is whether uid is in a range of system accounts above the
// people's: Debian's 60000 to 65535 (daemons' accounts, Slurm's for one,
// and nobody), and the 32-bit -1 and -2.
func systemUID(uid int) bool {
	return uid >= 60000 && uid <= 65535 || uid >= 4294967294
}

// Lookup returns the OS account name, with its groups. A static hpcgate
// (built with -tags osusergo,netgo, so that its client runs in any
// container image) reads only /etc/passwd and /etc/group itself: an
// account it does not find there is looked up again through the system's
// name service (getent, id), which knows a centre's LDAP or SSSD accounts.
func Lookup(name string) (*sched.Account, error) {
	u, err := user.Lookup(name)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		if a, gerr := lookupNSS(name); gerr == nil {
			return a, nil
		}
	}
	if err != nil {
		return nil, err
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("account %s: %w", name, err)
	}
	a := &sched.Account{Name: u.Username, UID: uid, GID: gid, Home: u.HomeDir}
	gids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("account %s: groups: %w", name, err)
	}
	for _, g := range gids {
		if n, err := strconv.Atoi(g); err == nil && n != gid {
			a.Groups = append(a.Groups, n)
		}
	}
	return a, nil
}

// lookupNSS looks name up through the system's name service switch with
// getent(1) and id(1): what os/user does with cgo, for a static binary.
// name is passed as an argument, never through a shell.
func lookupNSS(name string) (*sched.Account, error) {
	if strings.HasPrefix(name, "-") {
		return nil, user.UnknownUserError(name)
	}
	out, err := exec.Command("getent", "passwd", name).Output()
	if err != nil {
		return nil, user.UnknownUserError(name)
	}
	// name:password:uid:gid:gecos:home:shell
	f := strings.Split(strings.TrimSpace(string(out)), ":")
	if len(f) < 7 || f[0] != name {
		return nil, fmt.Errorf("getent passwd %s: unexpected %q", name, out)
	}
	uid, err1 := strconv.Atoi(f[2])
	gid, err2 := strconv.Atoi(f[3])
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("getent passwd %s: %w", name, err)
	}
	a := &sched.Account{Name: name, UID: uid, GID: gid, Home: f[5]}
	out, err = exec.Command("id", "-G", "--", name).Output()
	if err != nil {
		return nil, fmt.Errorf("id -G %s: %w", name, err)
	}
	for _, g := range strings.Fields(string(out)) {
		if n, err := strconv.Atoi(g); err == nil && n != gid {
			a.Groups = append(a.Groups, n)
		}
	}
	return a, nil
}
