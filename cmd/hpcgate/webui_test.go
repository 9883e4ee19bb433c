package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/hpcgate/hpcgate/api"
)

// browser is a headless Chromium (Debian's package) on a gateway's web
// interface. Every page it visits is saved as a screenshot in artifacts
// (HPCGATE_ARTIFACTS/webui, or a directory the test names in its log).
type browser struct {
	t         *testing.T
	g         *gw
	ctx       context.Context
	artifacts string
	shots     int
	mu        sync.Mutex
	problems  []string // the console's errors (a CSP violation among them)
}

func newBrowser(t *testing.T, g *gw) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("HPCGATE_TEST_BROWSER") == "1" {
			t.Fatal("chromium is missing (scripts/setup-browser.sh installs it)")
		}
		t.Skip("chromium is missing: run scripts/setup-browser.sh (scripts/test.sh does)")
	}
	art := os.Getenv("HPCGATE_ARTIFACTS")
	if art == "" {
		art = filepath.Join(os.TempDir(), "hpcgate-artifacts")
	}
	art = filepath.Join(art, "webui", strings.ReplaceAll(t.Name(), "/", "-"))
	os.RemoveAll(art)
	if err := os.MkdirAll(art, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", art)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path),
		// the gateway's certificate is its own, self-signed
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 900))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	b := &browser{t: t, g: g, ctx: ctx, artifacts: art}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// The page's errors: exceptions, console errors and the browser's
	// own (a CSP violation is one). HTTP statuses the pages expect (401
	// before signing in, 422 for a bad field) are the network's: left out.
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if (m.Type == chromedp.ConsoleError || m.IsException()) && m.Source != "network" {
				b.note(m.String())
			}
		}
	}()
	return b
}

func (b *browser) note(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, s)
}

// run runs actions, failing the test on an error (with a screenshot).
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot("failed-" + what)
		b.t.Fatalf("%s: %v", what, err)
	}
}

// shot saves a screenshot of the page as NN-name.png.
func (b *browser) shot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.shots++
	os.WriteFile(filepath.Join(b.artifacts, fmt.Sprintf("%02d-%s.png", b.shots, name)), png, 0o644)
}

// visit checks the page now shown (its accessibility, and that the
// console holds no error), then saves its screenshot.
func (b *browser) visit(name string) {
	b.t.Helper()
	for _, p := range evalAs[[]string](b, a11yAudit) {
		b.t.Errorf("%s: %s", name, p)
	}
	b.mu.Lock()
	for _, p := range b.problems {
		b.t.Errorf("%s: %s", name, p)
	}
	b.problems = nil
	b.mu.Unlock()
	b.shot(name)
}

// evalAs evaluates a JavaScript expression (awaiting a promise).
func evalAs[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.shot("failed-evaluate")
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// until waits for a JavaScript condition to hold.
func (b *browser) until(what, cond string) {
	b.t.Helper()
	b.run(what, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[any](cond, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second))(ctx, t)
		return err
	}))
}

// a11yAudit lists what a screen reader or a keyboard user would trip
// over on the page: controls without a label, buttons and links without
// a name, text below WCAG's contrast (4.5:1, 3:1 for large text), no
// language or no heading.
const a11yAudit = `(() => {
  const out = [];
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    if (!visible(el)) continue;
    if (!((el.labels && el.labels.length) || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby'))) out.push('a control without a label: ' + el.outerHTML.slice(0, 100));
  }
  for (const el of document.querySelectorAll('button, a[href]')) {
    if (visible(el) && !(el.textContent.trim() || el.getAttribute('aria-label'))) out.push('no accessible name: ' + el.outerHTML.slice(0, 100));
  }
  const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
  const lum = (c) => { const [r, g, b] = c.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const bgOf = (el) => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c.slice(0, 3); } return [255, 255, 255]; };
  for (const el of document.querySelectorAll('body *')) {
    if (!visible(el) || el.closest('[disabled]')) continue;
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const cs = getComputedStyle(el);
    const [hi, lo] = [lum(rgb(cs.color).slice(0, 3)), lum(bgOf(el))].sort((x, y) => y - x);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const large = parseFloat(cs.fontSize) >= 24 || (parseFloat(cs.fontSize) >= 18.66 && +cs.fontWeight >= 700);
    if (ratio < (large ? 3 : 4.5)) out.push('contrast ' + ratio.toFixed(2) + ': ' + el.tagName + ' "' + el.textContent.trim().slice(0, 40) + '"');
  }
  if (!document.documentElement.lang) out.push('the page has no language');
  if (!document.querySelector('h1')) out.push('the page has no heading');
  return out;
})()`

// The web interface end to end in a real browser: sign in with a token,
// submit wordcount with a file uploaded in the form, see a field error
// where the field is, watch a live log grow, download an output, cancel a
// job, use the keyboard, read it at a phone's width, and sign out (which
// ends the session on the server).
func TestWebInterface(t *testing.T) {
	g := startGateway(t, "template_dirs: ["+templatesDir(t, engineTemplate)+"]\n")
	user := g.userToken("wren")
	c := g.client(user)
	b := newBrowser(t, g)

	b.run("open", chromedp.Navigate(g.url+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.visit("sign-in")
	// the keyboard: Tab moves the focus, which is drawn; the first stop
	// of the page is the link that skips to its content
	b.run("tab", chromedp.KeyEvent(kb.Tab))
	focus := evalAs[struct{ Tag, Outline string }](b, `({Tag: document.activeElement.tagName, Outline: getComputedStyle(document.activeElement).outlineStyle})`)
	if focus.Tag == "BODY" || focus.Tag == "INPUT" || focus.Outline == "none" {
		t.Errorf("after Tab from the token the focus is %+v, want the next control, with an outline", focus)
	}
	if first := evalAs[string](b, `document.querySelector('a[href], button, input, select, textarea').className`); first != "skip" {
		t.Errorf("the first stop of the page is %q, want the skip link", first)
	}
	b.run("sign in", chromedp.SendKeys(chromedp.CSS("#token"), user), chromedp.Click(chromedp.CSS(`form.signin button`)))
	b.until("signed in", `document.getElementById("who").textContent.includes("wren")`)
	if evalAs[bool](b, `document.cookie.includes("hpcgate")`) {
		t.Error("the page can read the session cookie")
	}
	// the session's key is in this origin's storage; without it the
	// cookie changes nothing (a server on another port of the host gets
	// the cookie)
	if evalAs[string](b, `localStorage.getItem("hpcgate-session-key") || ""`) == "" {
		t.Error("the page kept no session key")
	}
	if status := evalAs[int](b, `fetch("/v1/jobs", {method: "POST", headers: {"X-Hpcgate-Csrf": "1", "Content-Type": "application/json"}, body: JSON.stringify({template: "hello", hold: true})}).then((r) => r.status)`); status != 401 {
		t.Errorf("a request with the cookie but not the key: %d, want 401", status)
	}
	b.visit("jobs-empty")

	// submit wordcount, uploading its input in the form
	story := filepath.Join(t.TempDir(), "story.txt")
	os.WriteFile(story, []byte("the cat sat on the mat with the hat\n"), 0o644)
	b.run("template page", chromedp.Navigate(g.url+"/#/templates/wordcount"), chromedp.WaitVisible(chromedp.CSS(`input[name="min_length"]`)))
	b.visit("wordcount-form")
	b.run("upload", chromedp.SetUploadFiles(chromedp.CSS(`input[type="file"]`), []string{story}))
	b.until("uploaded", `document.querySelector('select[name="input-text"]').value === "uploads/story.txt"`)
	// a value the schema refuses: the API's error appears at the field
	b.run("bad value", chromedp.SetValue(chromedp.CSS(`input[name="min_length"]`), "0"), chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	b.until("field error", `document.querySelector('input[name="min_length"]').getAttribute("aria-invalid") === "true"`)
	fieldErr := evalAs[string](b, `document.getElementById(document.querySelector('input[name="min_length"]').getAttribute("aria-describedby").split(" ").pop()).textContent`)
	if !strings.Contains(fieldErr, "at least 1") {
		t.Errorf("the field's error reads %q", fieldErr)
	}
	b.visit("wordcount-field-error")
	b.run("good value", chromedp.SetValue(chromedp.CSS(`input[name="min_length"]`), "3"), chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	b.until("job page", `location.hash.startsWith("#/jobs/") && document.querySelector(".state") !== null`)
	id := evalAs[string](b, `location.hash.slice("#/jobs/".length)`)
	b.until("succeeded", `document.querySelector(".state").textContent === "succeeded" && document.querySelector('a[download="results.json"]') !== null`)
	b.visit("wordcount-job")
	stdout := evalAs[string](b, `document.querySelector('pre[data-stream="stdout"]').textContent`)
	if !strings.Contains(stdout, "distinct") {
		t.Errorf("the job page's stdout: %q", stdout)
	}
	// an output downloaded through the page is the job's
	got := evalAs[string](b, `fetch(document.querySelector('a[download="results.json"]').href).then((r) => r.text())`)
	rc, _, err := c.Output(context.Background(), id, "results.json")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := io.ReadAll(rc)
	rc.Close()
	if got != string(want) || !strings.Contains(got, "most_common") {
		t.Errorf("results.json through the page %q, want %q", got, want)
	}
	if evalAs[int](b, `document.querySelectorAll('#h-results ~ div table tbody tr').length`) == 0 {
		t.Error("the job's results are not shown as a table")
	}

	// a live log grows on the page as the job writes it; cancel stops it
	j, err := c.CreateJob(context.Background(), api.JobRequest{Template: "steps", Parameters: json.RawMessage(`{"lines": 600, "pause": 0.1}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	b.run("running job", chromedp.Navigate(g.url+"/#/jobs/"+j.ID))
	b.until("log begins", `(document.querySelector('pre[data-stream="stdout"]')?.textContent || "").includes("line 3")`)
	n1 := evalAs[int](b, `document.querySelector('pre[data-stream="stdout"]').textContent.length`)
	b.until("log grows", fmt.Sprintf(`document.querySelector('pre[data-stream="stdout"]').textContent.length > %d + 20`, n1))
	b.visit("running-job")
	b.run("cancel", chromedp.Click(chromedp.CSS(`button.danger`)))
	b.until("canceled", `document.querySelector(".state").textContent === "canceled"`)
	if j, _ := c.Job(context.Background(), j.ID); j.State != api.StateCanceled {
		t.Errorf("the job is %s after Cancel on the page", j.State)
	}
	b.visit("canceled-job")

	// a sweep: its variants as a grid coloured by state, and its results
	sw, err := c.CreateSweep(context.Background(), api.SweepRequest{Template: "hello", Variants: json.RawMessage(`{"parameters": {"name": ["Ada", "Bo", "Cy"]}}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	// a parameter's invisible format characters are shown escaped, in its
	// table and in the log: a right-to-left override made
	// "invoice\u202efdp.exe" read "invoiceexe.pdf"
	rtl, err := c.CreateJob(context.Background(), api.JobRequest{Template: "hello", Parameters: json.RawMessage(`{"name": "invoice\u202efdp.exe"}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	b.run("bidi job", chromedp.Navigate(g.url+"/#/jobs/"+rtl.ID))
	b.until("bidi job done", `document.querySelector(".state")?.textContent === "succeeded" && (document.querySelector('pre[data-stream="stdout"]')?.textContent || "").includes("invoice")`)
	if text := evalAs[string](b, `document.querySelector("main").innerText`); strings.ContainsRune(text, '\u202e') || strings.Count(text, `invoice\u202efdp.exe`) < 2 {
		t.Errorf("the job page shows the override raw, or not escaped in its parameters and its log:\n%s", text)
	}
	// the other pages
	for _, p := range []struct{ name, hash, ready string }{
		{"sweep", "#/sweeps/" + sw.ID, `document.querySelectorAll(".grid a.cell-succeeded").length === 3 && document.querySelectorAll("main table tbody tr").length === 3`},
		{"jobs", "#/jobs", `document.querySelectorAll("main table tbody tr").length >= 2`},
		{"templates", "#/templates", `document.querySelector('a[href="#/templates/wordcount"]') !== null`},
		{"files", "#/files", `document.querySelector('a[download="story.txt"]') !== null`},
		{"environments", "#/environments", `document.querySelector("main table") !== null`},
	} {
		b.run(p.name, chromedp.Navigate(g.url+"/"+p.hash))
		b.until(p.name, p.ready)
		b.visit(p.name)
	}
	// a file deleted from the files page, in two steps
	if _, err := c.PutFile(context.Background(), "old/draft.txt", strings.NewReader("draft"), 5); err != nil {
		t.Fatal(err)
	}
	b.run("files again", chromedp.Navigate(g.url+"/#/environments"), chromedp.Navigate(g.url+"/#/files"))
	b.until("draft listed", `document.querySelector('button[aria-label="Delete old/draft.txt"]') !== null`)
	b.run("delete", chromedp.Click(chromedp.CSS(`button[aria-label="Delete old/draft.txt"]`)))
	b.until("armed", `document.querySelector('button[aria-label="Confirm: delete old/draft.txt"]') !== null`)
	b.run("confirm", chromedp.Click(chromedp.CSS(`button[aria-label="Confirm: delete old/draft.txt"]`)))
	b.until("deleted", `document.querySelector('a[download="draft.txt"]') === null && document.querySelector('a[download="story.txt"]') !== null`)
	if _, _, err := c.GetFile(context.Background(), "old/draft.txt", 0); err == nil {
		t.Error("old/draft.txt is still stored after Delete on the page")
	}

	// a phone's width: nothing wider than the screen
	b.run("phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(g.url+"/#/jobs/"+id))
	b.until("phone job page", `document.querySelector(".state") !== null`)
	if evalAs[bool](b, `document.documentElement.scrollWidth > window.innerWidth + 1`) {
		t.Error("the job page is wider than a phone's screen")
	}
	b.visit("phone-job")
	b.run("desktop", chromedp.EmulateViewport(1280, 900))

	// sign out: the session ends on the server
	b.run("sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.visit("signed-out")
	if status := evalAs[int](b, `fetch("/v1/me").then((r) => r.status)`); status != 401 {
		t.Errorf("after signing out, /v1/me answers %d, want 401", status)
	}
	if evalAs[bool](b, `localStorage.getItem("hpcgate-session-key") !== null`) {
		t.Error("signing out left the session's key")
	}
}

// The API reference renders the gateway's own openapi.json with the
// vendored viewer, under the same strict CSP.
func TestAPIReference(t *testing.T) {
	g := startGateway(t, "")
	b := newBrowser(t, g)
	b.run("docs", chromedp.Navigate(g.url+"/docs"))
	b.until("rendered", `document.querySelectorAll(".opblock").length > 30`)
	if !evalAs[bool](b, `[...document.querySelectorAll(".opblock-summary-path")].some((e) => e.textContent.includes("/v1/sessions"))`) {
		t.Error("the reference does not list /v1/sessions")
	}
	b.mu.Lock()
	for _, p := range b.problems {
		t.Errorf("docs: %s", p)
	}
	b.problems = nil
	b.mu.Unlock()
	b.shot("docs")
}

// A large file dropped on the files page goes straight to the object
// store, its parts through presigned URLs (the store's origin is in the
// CSP's connect-src, its CORS rule lets the page read each part's ETag),
// not through the gateway; it arrives whole.
func TestWebInterfaceDirectUpload(t *testing.T) {
	cfg := productionConfig(t)
	su, err := url.Parse(os.Getenv("HPCGATE_TEST_S3"))
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, cfg)
	// the bucket's CORS rule, as an operator sets it for the interface
	s3c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(su.Query().Get("endpoint")), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), "")})
	origin := strings.TrimSuffix(g.url, "/")
	if _, err := s3c.PutBucketCors(context.Background(), &s3.PutBucketCorsInput{Bucket: aws.String(su.Host), CORSConfiguration: &s3types.CORSConfiguration{
		CORSRules: []s3types.CORSRule{{AllowedOrigins: []string{origin}, AllowedMethods: []string{"PUT"}, AllowedHeaders: []string{"*"}, ExposeHeaders: []string{"ETag"}}},
	}}); err != nil {
		t.Fatalf("the bucket's CORS rule: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.bin")
	data := make([]byte, 70<<20) // above the page's directFrom (64 MiB)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	user := g.userToken("wren")
	b := newBrowser(t, g)
	b.run("sign in", chromedp.Navigate(g.url+"/"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), user), chromedp.Click(chromedp.CSS(`form.signin button`)))
	b.until("signed in", `document.getElementById("who").textContent.includes("wren")`)
	b.run("files", chromedp.Navigate(g.url+"/#/files"), chromedp.WaitVisible(chromedp.CSS("#upload-file")))
	b.run("upload", chromedp.SetUploadFiles(chromedp.CSS("#upload-file"), []string{big}))
	b.until("uploaded", `document.querySelector('a[download="big.bin"]') !== null || document.querySelector("main .error") !== null`)
	if msg := evalAs[string](b, `document.querySelector("main .error")?.textContent || ""`); msg != "" {
		t.Fatalf("the upload failed: %s", msg)
	}
	b.visit("direct-upload")
	c := g.client(user)
	rc, _, err := c.GetFile(context.Background(), "big.bin", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("big.bin: %d bytes back, want the %d sent", len(got), len(data))
	}
	// the bytes went to the store, not through the gateway
	log := g.log.String()
	if !strings.Contains(log, "path=/v1/uploads") || strings.Contains(log, "method=PUT path=/v1/files/big.bin") {
		t.Errorf("the upload did not go straight to the store:\n%s", log)
	}
}

// A GA4GH TES task is a job in the web interface too: its page says so,
// shows its executors (image, command) and, when it has none yet, that
// nothing was delivered.
func TestWebInterfaceTask(t *testing.T) {
	g := startGateway(t, `tes: {environment: pods}
environments:
  - {name: local, scheduler: local}
  - {name: pods, scheduler: local, container_runtime: podman, images: [localhost/]}
`)
	tok, err := g.client(g.token).CreateToken(context.Background(), api.TokenRequest{User: "tara", Scopes: []string{"tasks", "jobs:read", "jobs:write"}})
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, g)
	id := g.tes(tok.Token).create(map[string]any{"name": "held-task",
		"resources": map[string]any{"backend_parameters": map[string]string{"hold": "true"}},
		"executors": []any{map[string]any{"image": "localhost/tools:1", "command": []string{"sh", "-c", "echo hi"}}}})
	b.run("open", chromedp.Navigate(g.url+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.run("sign in", chromedp.SendKeys(chromedp.CSS("#token"), tok.Token), chromedp.Click(chromedp.CSS(`form.signin button`)))
	b.until("signed in", `document.getElementById("who").textContent.includes("tara")`)
	b.run("task page", chromedp.Navigate(g.url+"/#/jobs/"+id))
	b.until("executors", `[...document.querySelectorAll("table caption")].some((c) => c.textContent === "Executors")`)
	text := evalAs[string](b, `document.querySelector("main").innerText`)
	for _, want := range []string{"a GA4GH TES task", "localhost/tools:1", "sh -c echo hi", "Nothing yet."} {
		if !strings.Contains(text, want) {
			t.Errorf("the task's page lacks %q:\n%s", want, text)
		}
	}
	b.visit("task")
}
