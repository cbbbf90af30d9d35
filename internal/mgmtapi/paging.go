package mgmtapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/georeg/georeg/internal/ocierr"
)

// Listings of the management API are paged: at most n items (default and
// at most maxListPage) from skip on, and a Link header (rel="next") to the
// rest, which the CLI follows.
const maxListPage = 1000

// paged is a handler's answer that is one page of a longer listing.
type paged struct {
	items any
	next  string // the next page's path and query; "" when this is the last
}

// pageOf cuts items (a listing in its final order) to the page r asks
// for.
func pageOf[T any](r *http.Request, items []T) (any, error) {
	q := r.URL.Query()
	n, skip := maxListPage, 0
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			return nil, ocierr.PaginationNumberInvalid.Withf("n=%q must be a positive integer", s)
		}
		n = min(v, maxListPage)
	}
	if s := q.Get("skip"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return nil, ocierr.PaginationNumberInvalid.Withf("skip=%q must be a non-negative integer (follow the Link header)", s)
		}
		skip = v
	}
	if skip > len(items) {
		skip = len(items)
	}
	end := min(skip+n, len(items))
	page := items[skip:end]
	if page == nil {
		page = []T{}
	}
	if end == len(items) {
		return page, nil
	}
	next := url.Values{}
	for k, v := range q {
		next[k] = v
	}
	next.Set("n", strconv.Itoa(n))
	next.Set("skip", strconv.Itoa(end))
	return paged{items: page, next: r.URL.Path + "?" + next.Encode()}, nil
}

// linkNext is the Link header of a page with more after it.
func linkNext(next string) string { return fmt.Sprintf(`<%s>; rel="next"`, next) }
