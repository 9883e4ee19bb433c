package localsched

import (
	"errors"
	"sync"

	"golang.org/x/sys/unix"
)

// watcher wakes Run's loop when a watched process ends. Each watch is a
// goroutine blocked in poll(2) on the process's pidfd and on a pipe that
// close closes; close returns once every one of them has returned. It
// works for any process, not only children: tasks adopted from an
// earlier run are watched too. It does not reap: the loop does.
type watcher struct {
	stopR, stopW int
	wake         func()
	wg           sync.WaitGroup
}

func newWatcher(wake func()) (*watcher, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	return &watcher{stopR: p[0], stopW: p[1], wake: wake}, nil
}

// watch wakes the loop when pid (started at start, as procStart gives
// it) ends. If it has ended already, or pid now names another process,
// it wakes the loop at once.
func (w *watcher) watch(pid int, start string) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		w.wake()
		return
	}
	if procStart(pid) != start {
		unix.Close(fd)
		w.wake()
		return
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(w.stopR), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if fds[0].Revents != 0 {
			w.wake()
		}
	}()
}

// close stops every watch and waits for them.
func (w *watcher) close() {
	unix.Close(w.stopW) // the read end polls as hung up
	w.wg.Wait()
	unix.Close(w.stopR)
}
