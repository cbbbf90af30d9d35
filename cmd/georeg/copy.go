package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/transfer"
)

// copyCmd copies every repository and tag of a registry into a georeg
// registry: the target imports each tag server side (so each blob is
// fetched once per region: an import links content already there),
// tags whose digest already matches are skipped (a copy that stopped
// resumes), and at the end the target is checked against the source:
// every copied repository and tag is there, each tag at the source's
// digest, and every manifest under it (children of an index, referrers
// with --referrers) and every blob they name is present, manifests
// verified by their bytes.
func copyCmd() *cobra.Command {
	var o copyOptions
	cmd := &cobra.Command{
		Use:     "copy --from URL --to URL [--repos GLOB] [--referrers]",
		Short:   "Copy every repository and tag of a registry into a georeg registry (resumable, verified)",
		Example: `  georeg copy --from http://127.0.0.1:5001 --to https://newregistry.example.com --repos 'team/*'`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.from == "" || o.to == "" {
				return errors.New("--from and --to are required")
			}
			return copyRegistry(c.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.from, "from", "", "source registry URL (any OCI registry with the catalog API)")
	cmd.Flags().StringVar(&o.to, "to", "", "target georeg registry URL (any of its regions)")
	cmd.Flags().StringVar(&o.pattern, "repos", "*", "repositories to copy: a pattern, * for any run of characters")
	cmd.Flags().BoolVar(&o.referrers, "referrers", false, "copy the referrers (signatures, SBOMs) of every manifest too")
	cmd.Flags().StringVar(&o.user, "from-username", "", "source credentials, passed to the target's import (default: from the docker config)")
	cmd.Flags().StringVar(&o.pass, "from-password", "", "source password")
	return cmd
}

type copyOptions struct {
	from, to, pattern, user, pass string
	referrers                     bool
}

// copyItem is one tag of the source.
type copyItem struct{ repo, tag, digest string }

// sourceRef is the ggcr reference of base/repo:tag, http for http URLs.
func sourceRef(base, ref string) (name.Reference, error) {
	host := strings.TrimPrefix(strings.TrimPrefix(base, "https://"), "http://")
	var opts []name.Option
	if strings.HasPrefix(base, "http://") {
		opts = append(opts, name.Insecure)
	}
	return name.ParseReference(strings.TrimSuffix(host, "/")+"/"+ref, opts...)
}

func copyRegistry(ctx context.Context, o copyOptions) error {
	if o.user == "" {
		o.user, o.pass, _ = cli.StoredCredentials(o.from)
	}
	var srcAuth authn.Authenticator = authn.Anonymous
	if o.user != "" {
		srcAuth = &authn.Basic{Username: o.user, Password: o.pass}
	}
	src := []remote.Option{remote.WithContext(ctx), remote.WithAuth(srcAuth)}
	items, err := listSource(ctx, o, src)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return fmt.Errorf("no tag of a repository matching --repos %q at %s: nothing to copy (a pattern is one glob: * matches any run of characters, / included)", o.pattern, o.from)
	}
	target := cli.New(o.to, 30*time.Second)
	copied, skipped := 0, 0
	var bytesDone int64
	out := newProgress()
	for i, it := range items {
		line := func(job *transfer.Job) {
			s := step{what: fmt.Sprintf("copy: %d/%d tags (%d already there), %s:%s", i, len(items), skipped, it.repo, it.tag), done: bytesDone}
			if job != nil {
				s.done, s.total = job.BytesDone, job.Bytes
			}
			out.show(s, false)
		}
		line(nil)
		if d, _ := targetDigest(ctx, target, it.repo, it.tag); d == it.digest {
			skipped++
			continue
		}
		job, err := importTag(ctx, target, o, it, line)
		if err != nil {
			out.end()
			return err
		}
		bytesDone += job.BytesDone
		copied++
	}
	out.end()
	fmt.Fprintf(os.Stderr, "copy: %d/%d tags, %s copied (%d already there)\n", len(items), len(items), mib(bytesDone), skipped)
	sum, err := verifyCopy(ctx, o, src, target, items)
	if err != nil {
		return err
	}
	fmt.Printf("copied %d repositories, %d tags (%d copied now, %d already there); all %d verified by digest (%d manifests, %d blobs)\n",
		sum.repos, len(items), copied, skipped, len(items), sum.manifests, sum.blobs)
	return nil
}

// listSource lists every tag of the repositories matching o.pattern,
// with its digest.
func listSource(ctx context.Context, o copyOptions, opts []remote.Option) ([]copyItem, error) {
	var ropts []name.Option
	if strings.HasPrefix(o.from, "http://") {
		ropts = append(ropts, name.Insecure)
	}
	srcReg, err := name.NewRegistry(strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(o.from, "https://"), "http://"), "/"), ropts...)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	all, err := remote.Catalog(ctx, srcReg, opts...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", o.from, err)
	}
	var items []copyItem
	for _, repo := range all {
		if !oci.MatchPattern(o.pattern, repo) {
			continue
		}
		ref, err := sourceRef(o.from, repo)
		if err != nil {
			return nil, fmt.Errorf("repository %q of the source: %w", repo, err)
		}
		tags, err := remote.List(ref.Context(), opts...)
		if err != nil {
			return nil, fmt.Errorf("tags of %s: %w", repo, err)
		}
		sort.Strings(tags)
		for _, tag := range tags {
			r, err := sourceRef(o.from, repo+":"+tag)
			if err != nil {
				return nil, fmt.Errorf("tag %q of %s at the source: %w", tag, repo, err)
			}
			desc, err := remote.Head(r, opts...)
			if err != nil {
				return nil, fmt.Errorf("%s:%s: %w", repo, tag, err)
			}
			items = append(items, copyItem{repo, tag, desc.Digest.String()})
		}
	}
	return items, nil
}

// importTag has the target import one tag and waits for it, drawing its
// progress with line.
func importTag(ctx context.Context, target *cli.Client, o copyOptions, it copyItem, line func(*transfer.Job)) (*transfer.Job, error) {
	req := transfer.Request{Source: strings.TrimSuffix(o.from, "/") + "/" + it.repo + ":" + it.tag, Force: true,
		Username: o.user, Password: o.pass, Referrers: o.referrers}
	if strings.HasPrefix(o.from, "https://") {
		req.Source = strings.TrimPrefix(req.Source, "https://")
	}
	var job transfer.Job
	if err := target.Do(ctx, http.MethodPost, "/_georeg/v1/imports", req, &job); err != nil {
		return nil, fmt.Errorf("import %s:%s: %w", it.repo, it.tag, err)
	}
	for job.State == transfer.Running {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if err := target.Do(ctx, http.MethodGet, "/_georeg/v1/imports/"+job.ID, nil, &job); err != nil {
			return nil, err
		}
		line(&job)
	}
	if job.State != transfer.Succeeded {
		return nil, fmt.Errorf("import %s:%s failed: %s (run the copy again: it resumes)", it.repo, it.tag, job.Error)
	}
	return &job, nil
}

// copySummary counts what the verification checked.
type copySummary struct{ repos, manifests, blobs int }

// verifyCopy checks the target holds every item: each repository lists
// its tags, each tag resolves to the source's digest, and each manifest
// under it (and its referrers, with o.referrers) is served with bytes
// that hash to its digest, each blob it names present with its size.
func verifyCopy(ctx context.Context, o copyOptions, src []remote.Option, target *cli.Client, items []copyItem) (copySummary, error) {
	var sum copySummary
	var bad []string
	listed := map[string]map[string]bool{}
	checked := map[string]bool{}
	for _, it := range items {
		if listed[it.repo] == nil {
			tags, err := targetTags(ctx, target, it.repo)
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s: the target does not list its tags (%v)", it.repo, err))
				tags = nil
			}
			listed[it.repo] = map[string]bool{}
			for _, t := range tags {
				listed[it.repo][t] = true
			}
			sum.repos++
		}
		if !listed[it.repo][it.tag] {
			bad = append(bad, fmt.Sprintf("%s:%s is not in the target's tag list", it.repo, it.tag))
		}
		if d, err := targetDigest(ctx, target, it.repo, it.tag); err != nil || d != it.digest {
			bad = append(bad, fmt.Sprintf("%s:%s is %q at the target, %s at the source (%v)", it.repo, it.tag, d, it.digest, err))
			continue
		}
		queue := []digest.Digest{digest.Digest(it.digest)}
		for len(queue) > 0 {
			d := queue[0]
			queue = queue[1:]
			if checked[it.repo+"@"+d.String()] {
				continue
			}
			checked[it.repo+"@"+d.String()] = true
			children, blobs, err := verifyManifest(ctx, target, it.repo, d)
			if err != nil {
				bad = append(bad, err.Error())
				continue
			}
			sum.manifests++
			sum.blobs += blobs
			queue = append(queue, children...)
			if o.referrers {
				refs, err := sourceReferrers(o.from, it.repo, d, src)
				if err != nil {
					bad = append(bad, fmt.Sprintf("referrers of %s@%s at the source: %v", it.repo, d, err))
				}
				queue = append(queue, refs...)
			}
		}
	}
	if len(bad) > 0 {
		return sum, fmt.Errorf("verification failed (%d problems over %d tags):\n  %s", len(bad), len(items), strings.Join(bad, "\n  "))
	}
	return sum, nil
}

// verifyManifest GETs manifest d of repo at the target, checks its bytes
// hash to d and every blob it names is there with its size, and returns
// its child manifests and how many blobs it checked.
func verifyManifest(ctx context.Context, c *cli.Client, repo string, d digest.Digest) ([]digest.Digest, int, error) {
	resp, err := targetGet(ctx, c, http.MethodGet, repo, "/manifests/"+d.String())
	if err != nil {
		return nil, 0, fmt.Errorf("%s@%s at the target: %v", repo, d, err)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20+1))
	resp.Body.Close()
	if err != nil || d.Algorithm().FromBytes(raw) != d {
		return nil, 0, fmt.Errorf("%s@%s at the target: its bytes do not hash to its digest", repo, d)
	}
	m, err := oci.ParseManifest(resp.Header.Get("Content-Type"), raw)
	if err != nil {
		return nil, 0, fmt.Errorf("%s@%s at the target: %v", repo, d, err)
	}
	var children []digest.Digest
	for _, c := range m.Manifests {
		children = append(children, c.Digest)
	}
	for _, b := range m.Blobs() {
		resp, err := targetGet(ctx, c, http.MethodHead, repo, "/blobs/"+b.Digest.String())
		if err != nil {
			return nil, 0, fmt.Errorf("blob %s of %s@%s at the target: %v", b.Digest, repo, d, err)
		}
		resp.Body.Close()
		if resp.ContentLength != b.Size {
			return nil, 0, fmt.Errorf("blob %s of %s@%s at the target: %d bytes, the manifest says %d", b.Digest, repo, d, resp.ContentLength, b.Size)
		}
	}
	return children, len(m.Blobs()), nil
}

// sourceReferrers lists the referrers of repo@d at the source.
func sourceReferrers(from, repo string, d digest.Digest, opts []remote.Option) ([]digest.Digest, error) {
	ref, err := sourceRef(from, repo+"@"+d.String())
	if err != nil {
		return nil, err
	}
	idx, err := remote.Referrers(ref.(name.Digest), opts...)
	if err != nil {
		return nil, err
	}
	list, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []digest.Digest
	for _, r := range list.Manifests {
		out = append(out, digest.Digest(r.Digest.String()))
	}
	return out, nil
}

// targetTags lists repo's tags at the target (every page).
func targetTags(ctx context.Context, c *cli.Client, repo string) ([]string, error) {
	var out []string
	last := ""
	for range 10_000 { // pages of 1000: ten million tags at most
		resp, err := targetGet(ctx, c, http.MethodGet, repo, "/tags/list?n=1000&last="+url.QueryEscape(last))
		if err != nil {
			return nil, err
		}
		var page struct{ Tags []string }
		err = json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, page.Tags...)
		if len(page.Tags) < 1000 {
			return out, nil
		}
		last = page.Tags[len(page.Tags)-1]
	}
	return out, nil
}

// targetDigest returns the digest repo:tag has at the target.
func targetDigest(ctx context.Context, c *cli.Client, repo, tag string) (string, error) {
	resp, err := targetGet(ctx, c, http.MethodHead, repo, "/manifests/"+tag)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return resp.Header.Get("Docker-Content-Digest"), nil
}

// targetGet sends a /v2/<repo><path> request to the target, with a
// registry token when the client has credentials; anything but 200 is an
// error.
func targetGet(ctx context.Context, c *cli.Client, method, repo, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.Base, "/")+"/v2/"+repo+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", strings.Join(oci.ManifestMediaTypes, ", "))
	if c.User != "" {
		// /v2 wants a registry token: get one with the stored credentials.
		tok, err := registryToken(ctx, c, "repository:"+repo+":pull")
		if err == nil && tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %d", method, path, resp.StatusCode)
	}
	return resp, nil
}

// registryToken gets a /v2 token from a georeg token endpoint.
func registryToken(ctx context.Context, c *cli.Client, scope string) (string, error) {
	var ans struct{ Token string }
	err := c.Do(ctx, http.MethodGet, "/oauth2/token?service=georeg&scope="+url.QueryEscape(scope), nil, &ans)
	return ans.Token, err
}
