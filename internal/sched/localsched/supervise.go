package localsched

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// Supervise runs the task in dir (the supervisor's side of the executor):
// it starts the task's command in its working directory with its
// environment, output to dir/out.log, waits for it, and writes
// dir/exit.json with the exit code and resource usage. SIGTERM reaches the
// command from the executor; the supervisor itself outlives it to record
// the end.
func Supervise(ctx context.Context, dir string) error {
	var tf taskFile
	if err := readJSON(filepath.Join(dir, "task.json"), &tf); err != nil {
		return fmt.Errorf("%w in %s: %v", errNoTask, dir, err)
	}
	t := tf.Task
	signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	fail := func(reason string) error {
		return writeJSON(filepath.Join(dir, "exit.json"), exitInfo{ExitCode: -1, Reason: reason})
	}
	if err := os.MkdirAll(t.WorkDir, 0o700); err != nil {
		return fail("cannot create the working directory: " + err.Error())
	}
	out, err := os.OpenFile(filepath.Join(dir, "out.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fail(err.Error())
	}
	defer out.Close()
	cmd := exec.Command(t.Command[0], t.Command[1:]...)
	cmd.Dir = t.WorkDir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = os.Environ()
	for k, v := range t.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fail("cannot start: " + err.Error())
	}
	cmd.Wait()
	ex := exitInfo{ExitCode: cmd.ProcessState.ExitCode(), WallSeconds: time.Since(start).Seconds()}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		ex.Signal = ws.Signal().String()
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		ex.CPUSeconds = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
		ex.MaxRSSBytes = ru.Maxrss * 1024
	}
	return writeJSON(filepath.Join(dir, "exit.json"), ex)
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}
