// Package dashboard serves the live dashboard at /ui/: a static page
// (embedded with go:embed, no build step) that polls
// /_georeg/v1/dashboard every second and draws the regions, the lag
// between each pair, the repositories, and a per-image matrix of regions.
// Every region serves it, so it works through the front door too; with
// auth on, the data needs an admin (the browser asks for basic auth).
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed assets
var assets embed.FS

// Path is where the dashboard is served.
const Path = "/ui/"

// Handler serves the page and its scripts under Path.
func Handler() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix(Path, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "the dashboard answers GET", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}
