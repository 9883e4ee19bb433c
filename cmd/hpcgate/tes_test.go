package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/tes"
	"github.com/hpcgate/hpcgate/internal/tes/tesspec"
)

// tesClient speaks GA4GH TES to a gateway, as a workflow engine would:
// plain HTTP and JSON, every answer checked against the TES 1.1 schema.
type tesClient struct {
	t     *testing.T
	base  string
	token string
	http  *http.Client
}

func (g *gw) tes(token string) *tesClient {
	pem, err := os.ReadFile(g.cacert)
	if err != nil {
		g.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tesClient{t: g.t, base: g.url + "/ga4gh/tes/v1", token: token,
		http: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: time.Minute}}
}

// do sends a request and returns the status and body; a 2xx body must
// conform to schema (in view) when one is given.
func (c *tesClient) do(method, path string, body any, view, schema string) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 == 2 && schema != "" {
		if err := tesspec.ValidateView(view, schema, out); err != nil {
			c.t.Fatalf("%s %s: the answer does not conform to %s (%s): %v\n%s", method, path, schema, view, err, out)
		}
	}
	return resp.StatusCode, out
}

func (c *tesClient) create(task any) string {
	c.t.Helper()
	st, body := c.do("POST", "/tasks", task, "FULL", "tesCreateTaskResponse")
	if st != http.StatusOK {
		c.t.Fatalf("create task: %d %s", st, body)
	}
	var r tes.CreateTaskResponse
	json.Unmarshal(body, &r)
	return r.ID
}

func (c *tesClient) get(id, view string) tes.Task {
	c.t.Helper()
	st, body := c.do("GET", "/tasks/"+id+"?view="+view, nil, view, "tesTask")
	if st != http.StatusOK {
		c.t.Fatalf("get task %s: %d %s", id, st, body)
	}
	var t tes.Task
	if err := json.Unmarshal(body, &t); err != nil {
		c.t.Fatal(err)
	}
	return t
}

// wait polls task id until its state is one of states.
func (c *tesClient) wait(id string, timeout time.Duration, states ...tes.State) tes.Task {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		t := c.get(id, "FULL")
		if slices.Contains(states, t.State) {
			return t
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("task %s is %s after %v, want %v: %+v", id, t.State, timeout, states, t.Logs)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func (c *tesClient) cancel(id string) {
	c.t.Helper()
	if st, body := c.do("POST", "/tasks/"+id+":cancel", nil, "FULL", "tesCancelTaskResponse"); st != http.StatusOK {
		c.t.Fatalf("cancel %s: %d %s", id, st, body)
	}
}

// secondImage is the example image running as nobody (USER 65534, as
// many published images run as a user of their own): a task's executors
// run in two images sharing the task's files.
const secondImage = "localhost/hpcgate-tes-second:latest"

// The GA4GH TES API end to end, on the local executor and on Slurm, with
// podman: a task of several executors in two images, with inputs of every
// kind (content, a stored file, a directory, another job's output, an
// https:// URL), volumes, stdin/stdout/stderr files, an ignored failure,
// and FILE, DIRECTORY and glob outputs to the user's files; a failing
// executor, a missing image; cancel while queued and while running.
func TestTES(t *testing.T) {
	needPodman(t)
	build := exec.Command("podman", "build", "--pull=never", "-t", secondImage, "-f", "-")
	build.Stdin = strings.NewReader("FROM " + exampleImage + "\nUSER 65534:65534\n")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("podman build: %v\n%s", err, out)
	}
	cluster, err := os.ReadFile("../../examples/config/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, string(cluster))
	g.slots = "2"
	g.start()
	t.Cleanup(g.stop)
	envs := []string{"local-podman", "slurm-podman"}
	ctx := context.Background()
	admin := g.client(g.token)
	tok, err := admin.CreateToken(ctx, api.TokenRequest{User: "tess", Scopes: []string{"tasks", "jobs:read", "jobs:write", "files:read", "files:write"}})
	if err != nil {
		t.Fatal(err)
	}
	c := g.client(tok.Token)
	tc := g.tes(tok.Token)
	for p, body := range map[string]string{"tes/in.txt": "alpha beta\n", "tes/refs/a.txt": "A\n", "tes/refs/sub/b.txt": "BB\n"} {
		if _, err := c.PutFile(ctx, p, strings.NewReader(body), int64(len(body))); err != nil {
			t.Fatal(err)
		}
	}
	hello, err := c.CreateJob(ctx, api.JobRequest{Template: "hello", Environment: "local", Parameters: json.RawMessage(`{"name":"tes"}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, c, hello.ID, time.Minute); j.State != api.StateSucceeded {
		t.Fatalf("hello: %s %s", j.State, j.Error)
	}
	srv := g.tlsServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "remote\n") }))

	for _, env := range envs {
		t.Run(env, func(t *testing.T) {
			if env == "slurm-podman" && os.Getenv("HPCGATE_TEST_SLURM") != "1" {
				t.Skip("HPCGATE_TEST_SLURM not set: no Slurm to run tasks on (scripts/test.sh sets it)")
			}
			params := map[string]any{"backend_parameters": map[string]string{"environment": env}}
			res := fmt.Sprintf("tes/%s/", env)
			ex := func(image string, sh string) map[string]any {
				return map[string]any{"image": image, "command": []string{"sh", "-c", sh}}
			}
			t.Run("Rich", func(t *testing.T) {
				e0 := ex(exampleImage, `cat /in/content.txt /in/stored.txt /in/greeting.txt /in/remote.txt /refs/a.txt /refs/sub/b.txt; mkdir -p /shared/dir/sub; echo one > /shared/dir/x.txt; echo two > /shared/dir/sub/y.txt; echo "$GREETING"; pwd`)
				e0["workdir"], e0["env"], e0["stdout"] = "/shared", map[string]string{"GREETING": "hola"}, "/out/cat.txt"
				// as nobody: it reads inputs and an earlier executor's
				// stdout, and writes to a volume and an output's directory
				// (found by the seventh probe: the agent's 0600 files and
				// 0700 directories were root's alone)
				e1 := ex(secondImage, `wc -l < /out/cat.txt | tr -d ' ' > /shared/count; cat /in/stored.txt /refs/sub/b.txt > /out/second.txt; id -u > /out/uid.txt; echo failing >&2; exit 7`)
				e1["ignore_error"] = true
				e2 := ex(exampleImage, `tr a-z A-Z; echo 1,2 > /out/a.csv; echo 3,4 > /out/b.csv; cat /shared/count >&2`)
				e2["stdin"], e2["stderr"] = "/in/stored.txt", "/shared/err.txt"
				id := tc.create(map[string]any{
					"name": "rich", "tags": map[string]string{"suite": "tes"}, "resources": params,
					"inputs": []any{
						map[string]any{"content": "the content\n", "path": "/in/content.txt"},
						map[string]any{"url": "s3://hpcgate/tes/in.txt", "path": "/in/stored.txt"},
						map[string]any{"url": "job:" + hello.ID + "/outputs/greeting.txt", "path": "/in/greeting.txt"},
						map[string]any{"url": srv.URL + "/remote.txt", "path": "/in/remote.txt"},
						map[string]any{"url": "tes/refs", "path": "/refs", "type": "DIRECTORY"},
					},
					"volumes": []string{"/shared"},
					"outputs": []any{
						map[string]any{"url": "s3://hpcgate/" + res + "cat.txt", "path": "/out/cat.txt"},
						map[string]any{"url": res + "dir", "path": "/shared/dir", "type": "DIRECTORY"},
						map[string]any{"url": res + "csv", "path": "/out/*.csv", "path_prefix": "/out/"},
						map[string]any{"url": res + "err.txt", "path": "/shared/err.txt"},
						map[string]any{"url": res + "second.txt", "path": "/out/second.txt"},
						map[string]any{"url": res + "uid.txt", "path": "/out/uid.txt"},
					},
					"executors": []any{e0, e1, e2},
				})
				task := tc.wait(id, 3*time.Minute, tes.Complete, tes.ExecutorError, tes.SystemError)
				if task.State != tes.Complete {
					t.Fatalf("task %s: %+v", task.State, task.Logs)
				}
				l := task.Logs[0]
				if len(l.Logs) != 3 || l.Logs[0].ExitCode != 0 || l.Logs[1].ExitCode != 7 || l.Logs[2].ExitCode != 0 {
					t.Fatalf("executor logs %+v", l.Logs)
				}
				for i, el := range l.Logs {
					if el.StartTime == "" || el.EndTime == "" || el.EndTime < el.StartTime || i > 0 && el.StartTime < l.Logs[i-1].EndTime {
						t.Errorf("executor %d ran %s to %s, not in order", i, el.StartTime, el.EndTime)
					}
				}
				want := "the content\nalpha beta\nHello, tes\nremote\nA\nBB\nhola\n/shared\n"
				if l.Logs[0].Stdout != want || l.Logs[1].Stderr != "failing\n" || l.Logs[2].Stdout != "ALPHA BETA\n" {
					t.Errorf("executors' stdout/stderr: %q, %q, %q", l.Logs[0].Stdout, l.Logs[1].Stderr, l.Logs[2].Stdout)
				}
				files := map[string]string{"cat.txt": want, "dir/x.txt": "one\n", "dir/sub/y.txt": "two\n", "csv/a.csv": "1,2\n", "csv/b.csv": "3,4\n", "err.txt": "8\n",
					"second.txt": "alpha beta\nBB\n", "uid.txt": "65534\n"}
				for p, body := range files {
					rc, _, err := c.GetFile(ctx, res+p, 0)
					if err != nil {
						t.Errorf("output %s: %v", p, err)
						continue
					}
					got, _ := io.ReadAll(rc)
					rc.Close()
					if string(got) != body {
						t.Errorf("output %s = %q, want %q", p, got, body)
					}
				}
				if len(l.Outputs) != len(files) {
					t.Errorf("output logs %+v, want %d", l.Outputs, len(files))
				}
				for _, o := range l.Outputs {
					if want, ok := files[strings.TrimPrefix(strings.TrimPrefix(o.URL, "s3://hpcgate/"), res)]; !ok || o.SizeBytes != fmt.Sprint(len(want)) {
						t.Errorf("output log %+v", o)
					}
				}
				// the task is a job, with its whole log
				j, err := c.Job(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if j.Template != "TES" || j.Environment != env || len(j.Steps) != 3 || j.Labels["suite"] != "tes" {
					t.Errorf("job %+v", j)
				}
				if out, _ := io.ReadAll(must(c.Log(ctx, id, "stdout", 0, false))); string(out) != want+"ALPHA BETA\n" {
					t.Errorf("the job's stdout %q", out)
				}
				// listed, by tag and name
				st, body := tc.do("GET", "/tasks?view=BASIC&tag_key=suite&tag_value=tes&name_prefix=ric", nil, "BASIC", "tesListTasksResponse")
				if st != http.StatusOK || !strings.Contains(string(body), id) {
					t.Errorf("list: %d %s", st, body)
				}
			})

			t.Run("Failures", func(t *testing.T) {
				id := tc.create(map[string]any{"resources": params, "executors": []any{ex(exampleImage, "echo before; exit 3"), ex(exampleImage, "echo never")}})
				task := tc.wait(id, 3*time.Minute, tes.Complete, tes.ExecutorError, tes.SystemError)
				if task.State != tes.ExecutorError || len(task.Logs[0].Logs) != 1 || task.Logs[0].Logs[0].ExitCode != 3 || task.Logs[0].Logs[0].Stdout != "before\n" {
					t.Errorf("failing executor: %s %+v", task.State, task.Logs)
				}
				id = tc.create(map[string]any{"resources": params, "executors": []any{ex("localhost/hpcgate-no-such-image:1", "true")}})
				task = tc.wait(id, 3*time.Minute, tes.Complete, tes.ExecutorError, tes.SystemError)
				if task.State != tes.SystemError || len(task.Logs[0].SystemLogs) == 0 || !strings.Contains(task.Logs[0].SystemLogs[0], "runtime") {
					t.Errorf("missing image: %s %+v", task.State, task.Logs)
				}
				// the walltime is named as given, not as what was left of it
				// when the executor started ("1.995514801s")
				timed := map[string]any{"backend_parameters": map[string]string{"environment": env, "walltime_s": "2"}}
				id = tc.create(map[string]any{"resources": timed, "executors": []any{ex(exampleImage, "sleep 60")}})
				task = tc.wait(id, 3*time.Minute, tes.Complete, tes.ExecutorError, tes.SystemError)
				if task.State != tes.SystemError || !strings.Contains(strings.Join(task.Logs[0].SystemLogs, " "), "the walltime of 2s was exceeded") {
					t.Errorf("walltime: %s %+v", task.State, task.Logs)
				}
				// an output the executors did not make fails the task
				id = tc.create(map[string]any{"resources": params, "executors": []any{ex(exampleImage, "true")},
					"outputs": []any{map[string]any{"url": res + "never.txt", "path": "/out/never.txt"}}})
				task = tc.wait(id, 3*time.Minute, tes.Complete, tes.ExecutorError, tes.SystemError)
				if task.State != tes.SystemError || !strings.Contains(strings.Join(task.Logs[0].SystemLogs, " "), "/out/never.txt") {
					t.Errorf("missing output: %s %+v", task.State, task.Logs)
				}
			})

			t.Run("Cancel", func(t *testing.T) {
				busy := map[string]any{"cpu_cores": 2, "backend_parameters": map[string]string{"environment": env}}
				running := tc.create(map[string]any{"resources": busy, "executors": []any{ex(exampleImage, "echo started; sleep 300")}})
				t.Cleanup(func() { tc.do("POST", "/tasks/"+running+":cancel", nil, "", "") }) // if the test fails before it does
				deadline := time.Now().Add(2 * time.Minute)
				for {
					task := tc.get(running, "FULL")
					if task.State == tes.Running && len(task.Logs) > 0 && len(task.Logs[0].Logs) > 0 && task.Logs[0].Logs[0].Stdout == "started\n" {
						break
					}
					if time.Now().After(deadline) || task.State != tes.Queued && task.State != tes.Initializing && task.State != tes.Running {
						t.Fatalf("task %s: %+v", task.State, task.Logs)
					}
					time.Sleep(300 * time.Millisecond)
				}
				// the node's cores are taken: this one waits
				queued := tc.create(map[string]any{"resources": busy, "executors": []any{ex(exampleImage, "echo ran")}})
				t.Cleanup(func() { tc.do("POST", "/tasks/"+queued+":cancel", nil, "", "") })
				time.Sleep(2 * time.Second)
				if task := tc.get(queued, "MINIMAL"); task.State != tes.Queued {
					t.Fatalf("second task %s, want QUEUED", task.State)
				}
				tc.cancel(queued)
				if task := tc.wait(queued, time.Minute, tes.Canceled, tes.Complete); task.State != tes.Canceled {
					t.Fatalf("queued task canceled: %s", task.State)
				}
				tc.cancel(running)
				if task := tc.wait(running, time.Minute, tes.Canceled, tes.Complete, tes.ExecutorError, tes.SystemError); task.State != tes.Canceled {
					t.Fatalf("running task canceled: %s", task.State)
				}
				// its container is gone
				name := "hpcgate-" + running + "-exec-0"
				for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
					out, _ := exec.Command("podman", "ps", "-a", "--format", "{{.Names}}").Output()
					if !strings.Contains(string(out), name) {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("container %s still there after cancel", name)
					}
				}
				// canceling an ended task is no error
				tc.cancel(running)
			})
		})
	}
}
