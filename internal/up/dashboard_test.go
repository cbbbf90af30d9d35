package up_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/georeg/georeg/internal/up"
)

// chromium is Debian's Chromium, which `make test` installs.
const chromium = "/usr/bin/chromium"

// browser starts headless Chromium (flags as this machine needs them:
// no sandbox as root, no background networking on a closed network) and
// stops it when the test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%s is missing (make test installs Debian's chromium): %v", chromium, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return ctx
}

// artifacts is where tests leave files worth looking at: $GEOREG_ARTIFACTS
// (make test sets ./artifacts), else a temporary folder.
func artifacts(t *testing.T) string {
	dir := os.Getenv("GEOREG_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "georeg-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDashboardShowsRegionsAndAnImageArrivingEverywhere drives the
// dashboard in headless Chromium through the front door: three Ready
// regions, then a push to eastus whose row shows southeastasia pending
// (its downloads are held) and then, released, present in all three, and
// the usage panel with the image's bytes stored in each, and with soft
// delete on a deleted image shown restorable. A screenshot is kept.
func TestDashboardShowsRegionsAndAnImageArrivingEverywhere(t *testing.T) {
	// southeastasia's blob downloads wait until the test has seen the row
	// with southeastasia pending.
	link := &faultyLink{}
	release := make(chan struct{})
	link.hold(func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/blobs/") }, release)
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	// From every peer: a fetch held longer than the peer idle bound (15 s)
	// fails and is made again from another region that holds the blob,
	// which must not end the pending state before the test has seen it.
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), FrontDoor: "127.0.0.1:0",
		Link: linkedFrom(t, link, "southeastasia")})
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(reg.FrontDoor+"/ui/")); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	// Bound each step, not the browser (chromedp.Run's first context owns it).
	step := func(d time.Duration) context.Context {
		c, cancel := context.WithTimeout(ctx, d)
		t.Cleanup(cancel)
		return c
	}
	if _, err := chromedp.Run(step(30*time.Second), chromedp.Poll[bool](`document.querySelectorAll('#regions tbody tr[data-state="Ready"]').length === 3`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the dashboard did not show three Ready regions: %v", err)
	}
	states, err := chromedp.Run(step(10*time.Second), chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#regions tbody tr')).map(r => r.dataset.region + "=" + r.dataset.state)`))
	if err != nil || strings.Join(states, ",") != "eastus=Ready,southeastasia=Ready,westeurope=Ready" {
		t.Fatalf("regions shown: %v %v", states, err)
	}
	push(t, reg.ByName["eastus"].URL, "demo/app", "v1", "dashboard", 2<<20)
	row := `#images tr[data-image="demo/app:v1"]`
	if err := chromedp.Do(step(30*time.Second), chromedp.WaitVisible(row)); err != nil {
		t.Fatalf("the image row did not appear: %v", err)
	}
	if _, err := chromedp.Run(step(30*time.Second), chromedp.Poll[bool](fmt.Sprintf(
		`document.querySelector('%[1]s td[data-region="southeastasia"]').className === "pending" && document.querySelectorAll('%[1]s td.present').length === 2`, row),
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		cells, _ := chromedp.Run(step(5*time.Second), chromedp.Evaluate[[]string](fmt.Sprintf(
			`Array.from(document.querySelectorAll('%s td[data-region]')).map(c => c.dataset.region + "=" + c.className)`, row)))
		t.Fatalf("the row did not show eastus and westeurope present, southeastasia pending (it shows %v; %s): %v",
			cells, dashboardSeen(t, reg.FrontDoor, "demo/app", "v1"), err)
	}
	// While its downloads are held, southeastasia says it is behind
	// eastus (changes waiting, the oldest one's age), not "caught up".
	if _, err := chromedp.Run(step(30*time.Second), chromedp.Poll[bool](
		`(() => { const c = document.querySelector('#lag tr[data-region="southeastasia"] td:nth-child(2)'); return c && c.dataset.lag === "behind" && /behind/.test(c.textContent) && /oldest/.test(c.textContent); })()`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		cell, _ := chromedp.Run(step(5*time.Second), chromedp.Evaluate[string](`(() => { const c = document.querySelector('#lag tr[data-region="southeastasia"] td:nth-child(2)'); return c ? c.dataset.lag + ": " + c.textContent : "no cell"; })()`))
		t.Fatalf("southeastasia's row did not show it behind eastus (it shows %q): %v", cell, err)
	}
	close(release)
	released = true
	if _, err := chromedp.Run(step(30*time.Second), chromedp.Poll[bool](fmt.Sprintf(`document.querySelectorAll('%s td.present').length === 3`, row),
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the image row did not fill in: %v", err)
	}
	if _, err := chromedp.Run(step(30*time.Second), chromedp.Poll[bool](
		`document.querySelectorAll('#lag td[data-lag="caught up"]').length === 6`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the regions did not show caught up with each other: %v", err)
	}
	// The usage panel: every region stores the image's blobs (a 20-byte
	// config and the layer), and the estimate is drawn. Figures are at
	// most 10 s old and the panel polls every 10 s.
	const stored = 20 + 2<<20
	if _, err := chromedp.Run(step(45*time.Second), chromedp.Poll[bool](fmt.Sprintf(
		`document.querySelectorAll('#usage tbody tr[data-stored="%d"]').length === 3 && /^Estimate/.test(document.querySelector('#estimate').textContent)`, stored),
		chromedp.WithPollingTimeout(45*time.Second))); err != nil {
		shown, _ := chromedp.Run(step(5*time.Second), chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#usage tbody tr')).map(r => r.dataset.region + "=" + r.dataset.stored)`))
		t.Fatalf("the usage panel did not show %d bytes stored in each region (it shows %v): %v", stored, shown, err)
	}
	// Routing as the door does it: turned off for westeurope.
	if code, _, body := do(t, "PUT", reg.FrontDoor+"/_georeg/v1/replications/westeurope", "application/json", []byte(`{"regionEndpointEnabled":false}`)); code != 200 {
		t.Fatalf("turn westeurope's routing off: %d %s", code, body)
	}
	if _, err := chromedp.Run(step(30*time.Second), chromedp.Poll[bool](
		`document.querySelector('#regions tr[data-region="westeurope"] td.routed').dataset.routed === "off: turned off" && document.querySelector('#regions tr[data-region="eastus"] td.routed').dataset.routed === "on"`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the dashboard did not show westeurope's routing off: %v", err)
	}
	// Soft delete on: a deleted image is shown restorable.
	east := reg.ByName["eastus"].URL
	if code, _, body := do(t, "PUT", east+"/_georeg/v1/policies/soft-delete", "application/json", []byte(`{"status":"enabled","days":7}`)); code != 200 {
		t.Fatalf("soft delete on: %d %s", code, body)
	}
	old := push(t, east, "demo/old", "v1", "old", 1000)
	if code, _, body := do(t, "DELETE", east+"/v2/demo/old/manifests/"+old.manifest.String(), "", nil); code != 202 {
		t.Fatalf("delete: %d %s", code, body)
	}
	if _, err := chromedp.Run(step(30*time.Second), chromedp.Poll[bool](fmt.Sprintf(
		`(() => { const c = document.querySelector('#deleted tr[data-deleted="demo/old@%s"] td.restorable'); return !!c && /^deleted \(restorable until \d{4}-/.test(c.textContent); })()`, old.manifest),
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the dashboard did not show the deleted image restorable: %v", err)
	}
	stamp, err := chromedp.Run(step(10*time.Second), chromedp.Evaluate[string](`document.querySelector('#updated').textContent`))
	if err != nil || !regexp.MustCompile(`^updated \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$`).MatchString(stamp) {
		t.Fatalf("the page's time %q (%v), want a full date and time", stamp, err)
	}
	png, err := chromedp.Run(step(30*time.Second), chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(artifacts(t), "dashboard.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	repos, err := chromedp.Run(step(10*time.Second), chromedp.Evaluate[int](`document.querySelectorAll('#repositories tbody tr[data-repository="demo/app"]').length`))
	if err != nil || repos != 1 {
		t.Fatalf("repositories list: %d %v", repos, err)
	}
}

// TestWithAuthTheDashboardSignsInWithTokens: with auth on, the dashboard
// shows its sign-in form (its data request gets no basic-auth challenge,
// so the browser neither prompts nor caches a password), a wrong password
// says so, and the admin's shows the regions, with the tokens kept in the
// tab's sessionStorage, never a cookie.
func TestWithAuthTheDashboardSignsInWithTokens(t *testing.T) {
	dir := t.TempDir()
	reg := runRegistry(t, up.Config{DataDir: dir, Regions: threeRegions()[:2], Auth: true, FrontDoor: "127.0.0.1:0"})
	pass, err := up.LoadAdminPassword(dir)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error { // the door routes once its probes found the regions
		req, _ := http.NewRequest(http.MethodGet, reg.FrontDoor+"/_georeg/v1/dashboard", nil)
		req.Header.Set("X-Georeg-Client", "dashboard")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != "" {
			return fmt.Errorf("the dashboard's data without a token: %d, challenge %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		return nil
	})
	ctx := browser(t)
	step := func(d time.Duration) context.Context {
		c, cancel := context.WithTimeout(ctx, d)
		t.Cleanup(cancel)
		return c
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(reg.FrontDoor+"/ui/")); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	if err := chromedp.Do(step(30*time.Second), chromedp.WaitVisible("#login")); err != nil {
		t.Fatalf("no sign-in form: %v", err)
	}
	if err := chromedp.Do(step(10*time.Second), chromedp.SendKeys("#login-user", "admin"), chromedp.SendKeys("#login-password", "wrong-password"),
		chromedp.Click("#login-submit"), chromedp.WaitVisible("#login-error")); err != nil {
		t.Fatalf("a wrong password: %v", err)
	}
	if _, err := chromedp.Run(step(10*time.Second), chromedp.Evaluate[string](`document.querySelector('#login-password').value = ""`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(step(10*time.Second), chromedp.SendKeys("#login-password", pass), chromedp.Click("#login-submit")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(step(30*time.Second), chromedp.Poll[bool](`document.querySelectorAll('#regions tbody tr[data-state="Ready"]').length === 2 && document.querySelector('#login').hidden`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("signed in, the dashboard did not show two Ready regions: %v", err)
	}
	kept, err := chromedp.Run(step(10*time.Second), chromedp.Evaluate[string](`(sessionStorage.getItem("georeg-access") ? "token" : "none") + "," + (document.cookie || "no cookie")`))
	if err != nil || kept != "token,no cookie" {
		t.Fatalf("what the tab keeps: %q %v", kept, err)
	}
}

// dashboardSeen says, for a failure message, which region the door sent a
// dashboard request to and where that region saw repo:tag.
func dashboardSeen(t *testing.T, door, repo, tag string) string {
	t.Helper()
	code, h, body := do(t, "GET", door+"/_georeg/v1/dashboard", "", nil)
	var d struct {
		Images []struct {
			Repository, Tag string
			Regions         map[string]string
		}
	}
	if code != 200 || json.Unmarshal(body, &d) != nil {
		return fmt.Sprintf("the door's dashboard answered %d from %q: %.200s", code, h.Get("X-Georeg-Region"), body)
	}
	for _, img := range d.Images {
		if img.Repository == repo && img.Tag == tag {
			return fmt.Sprintf("the door's dashboard now, from %s: %v", h.Get("X-Georeg-Region"), img.Regions)
		}
	}
	return fmt.Sprintf("the door's dashboard now, from %s, has no %s:%s", h.Get("X-Georeg-Region"), repo, tag)
}
