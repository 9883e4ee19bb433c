package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

// bigLogTemplate writes about MB megabytes of lines to its standard
// output, fast.
const bigLogTemplate = `name: biglog
version: 1
command: [sh, -c, 'yes "a line of a long log, as a solver writes them: step 0123456789 residual 1.0e-06" | head -c "${HPCGATE_PARAM_MB}000000"']
parameters:
  type: object
  properties:
    mb: {type: integer, minimum: 1, default: 200}
environments: [local]
`

// webUI measures the web interface in headless Chromium with n jobs
// stored: how long the jobs page takes to show its first page and a job
// page to show the job, from the request (a change of the page's
// address) to the content on screen, and what a job page with a log of
// logMB megabytes does to the page: the time until the log's end shows,
// and the longest the page's event loop stalls meanwhile (a frozen page
// stalls for seconds).
func webUI(bin string, n, logMB, rounds int) error {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		return fmt.Errorf("chromium is missing: scripts/setup-browser.sh installs it")
	}
	dir, err := os.MkdirTemp("", "hpcgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tmpl := filepath.Join(dir, "templates")
	os.Mkdir(tmpl, 0o700)
	if err := os.WriteFile(filepath.Join(tmpl, "biglog.yaml"), []byte(bigLogTemplate), 0o600); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(cfg, []byte(benchConfig+"template_dirs: ["+tmpl+"]\n"), 0o600); err != nil {
		return err
	}
	s, c, err := serverWithConfig(bin, dir, cfg)
	if err != nil {
		return err
	}
	defer s.stop()
	ctx := context.Background()

	// n held jobs, as sweeps of 1,000 (one transaction each)
	start := time.Now()
	for made := 0; made < n; made += 1000 {
		k := min(1000, n-made)
		names := make([]map[string]string, k)
		for i := range names {
			names[i] = map[string]string{"name": fmt.Sprintf("v%d", made+i)}
		}
		variants, _ := json.Marshal(names)
		if _, err := c.CreateSweep(ctx, api.SweepRequest{Template: "hello", Variants: variants, Hold: true}, ""); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "%d jobs stored in %.1f s\n", n, time.Since(start).Seconds())
	big, err := c.CreateJob(ctx, api.JobRequest{Template: "biglog", Parameters: json.RawMessage(fmt.Sprintf(`{"mb": %d}`, logMB))}, "")
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	if big, err = c.Wait(wctx, big.ID); err != nil || big.State != api.StateSucceeded {
		return fmt.Errorf("the job of a %d MB log: %v %v", logMB, big, err)
	}
	t0 := time.Now()
	if _, err := c.Jobs(ctx, client.JobFilter{Limit: 50}); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "the API's first page of jobs: %v\n", time.Since(t0))
	small, err := c.Jobs(ctx, client.JobFilter{Limit: 1, State: api.StateHeld})
	if err != nil || len(small.Items) == 0 {
		return fmt.Errorf("a held job: %v", err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium),
		chromedp.Flag("ignore-certificate-errors", true), chromedp.WindowSize(1280, 900))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	if err := chromedp.Do(bctx,
		chromedp.Navigate(s.url+"/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), s.token),
		chromedp.Click(chromedp.CSS("form.signin button")),
		chromedp.WaitVisible(chromedp.CSS("#nav"))); err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	// timed runs a page change in the page itself: ms from setting the
	// address to the condition holding
	// from: another page, shown whole
	from := func() error {
		return chromedp.Do(bctx, chromedp.Navigate(s.url+"/#/environments"), chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Poll[bool](`document.querySelector("h1")?.textContent === "Environments" && document.querySelector("main table") !== null`, chromedp.WithPollingTimeout(time.Minute))(ctx, t)
			return err
		}))
	}
	timed := func(hash, cond string) (float64, error) {
		if err := from(); err != nil {
			return 0, err
		}
		js := fmt.Sprintf(`(async () => {
			const t0 = performance.now();
			location.hash = %q;
			while (!(%s)) await new Promise((r) => setTimeout(r, 2));
			return performance.now() - t0;
		})()`, hash, cond)
		tctx, cancel := context.WithTimeout(bctx, time.Minute)
		defer cancel()
		ms, err := chromedp.Run(tctx, chromedp.Evaluate[float64](js, chromedp.EvalAwaitPromise))
		if err != nil {
			shown, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`location.hash + ": " + document.querySelector("main").innerText.slice(0, 400)`))
			return 0, fmt.Errorf("%w; the page shows %q", err, shown)
		}
		return ms, nil
	}
	var jobsMS, jobMS []float64
	for range rounds {
		ms, err := timed("#/jobs", `document.querySelector("h1")?.textContent === "Jobs" && document.querySelectorAll("main table tbody tr").length >= 50`)
		if err != nil {
			return fmt.Errorf("jobs page: %w", err)
		}
		jobsMS = append(jobsMS, ms)
		ms, err = timed("#/jobs/"+small.Items[0].ID, `document.querySelector("h1")?.textContent !== "Environments" && document.querySelector(".state") !== null && document.querySelector("#h-timeline + ol li") !== null`)
		if err != nil {
			return fmt.Errorf("job page: %w", err)
		}
		jobMS = append(jobMS, ms)
	}
	// the big log's page: until its end shows, and the event loop's
	// longest stall over the first 3 s
	if err := from(); err != nil {
		return err
	}
	js := fmt.Sprintf(`(async () => {
		let worst = 0, last = performance.now(), shown = -1;
		const t0 = performance.now();
		location.hash = %q;
		while (performance.now() - t0 < 3000) {
			await new Promise((r) => setTimeout(r, 0));
			const now = performance.now();
			worst = Math.max(worst, now - last);
			last = now;
			const pre = document.querySelector('pre[data-stream="stdout"]');
			if (shown < 0 && pre && pre.textContent.includes("residual")) shown = now - t0;
		}
		return [shown, worst];
	})()`, "#/jobs/"+big.ID)
	tctx, cancelT := context.WithTimeout(bctx, time.Minute)
	defer cancelT()
	res, err := chromedp.Run(tctx, chromedp.Evaluate[[]float64](js, chromedp.EvalAwaitPromise))
	if err != nil || len(res) != 2 {
		return fmt.Errorf("the big log's page: %v", err)
	}
	fmt.Printf("### The web interface, %d jobs stored, headless Chromium (%d rounds)\n\n", n, rounds)
	fmt.Printf("| page | p50 | worst | aim |\n|---|---|---|---|\n")
	fmt.Printf("| jobs, first page (50 rows) | %.0f ms | %.0f ms | < 300 ms |\n", median(jobsMS), slices.Max(jobsMS))
	fmt.Printf("| a job | %.0f ms | %.0f ms | < 200 ms |\n", median(jobMS), slices.Max(jobMS))
	fmt.Printf("| a job with a %d MB log: its end shown | %.0f ms | | |\n", logMB, res[0])
	fmt.Printf("| the same page: longest stall of the page in its first 3 s | %.0f ms | | not frozen |\n\n", res[1])
	return nil
}
