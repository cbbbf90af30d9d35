// Package transfer imports images into a region from any OCI registry,
// server side: the region pulls, the bytes never pass through the client
// that asked. An import copies a tag or digest with every platform of an
// index, optionally its referrers, verifying every blob and manifest by
// digest (the region stores nothing else), and reports progress as a job.
//
// Jobs live in the memory of the node that runs them: a node that
// restarts forgets its jobs (run the import again: what arrived is kept
// and not fetched twice).
package transfer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/outbound"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/webhook"
)

// Request asks for one import. Username and Password are the source
// registry's credentials: used for this import, never stored or logged.
type Request struct {
	Source    string `json:"source"`          // [http://]registry/repo:tag or @digest
	Image     string `json:"image,omitempty"` // target repo[:tag]; default the source's
	Username  string `json:"username,omitempty"`
	Password  string `json:"password,omitempty"`
	Force     bool   `json:"force,omitempty"`     // overwrite a target tag that points elsewhere
	Referrers bool   `json:"referrers,omitempty"` // also copy what refers to the image
}

// Job states.
const (
	Running   = "running"
	Succeeded = "succeeded"
	Failed    = "failed"
)

// Job is an import's progress.
type Job struct {
	ID        string `json:"id"`
	Source    string `json:"source"`
	Target    string `json:"target"` // repo:tag or repo@digest
	State     string `json:"state"`
	Digest    string `json:"digest,omitempty"` // of the imported manifest
	Manifests int    `json:"manifests"`        // to copy, found so far
	Blobs     int    `json:"blobs"`
	BlobsDone int    `json:"blobsDone"`
	Bytes     int64  `json:"bytes"`
	BytesDone int64  `json:"bytesDone"`
	Reused    int    `json:"blobsReused"` // already in this region: not fetched
	// BytesFetched crossed from the source (a broken transfer's too).
	BytesFetched int64 `json:"bytesFetched"`
	// ReferrersSkipped says why the referrers were not fetched, when the
	// source could not list them (the artifact cache's fetch only).
	ReferrersSkipped string    `json:"referrersSkipped,omitempty"`
	Error            string    `json:"error,omitempty"`
	Started          time.Time `json:"started"`
	Finished         time.Time `json:"finished,omitzero"`
}

// Importer runs imports into one region, one at a time per job, several
// jobs at once.
type Importer struct {
	region *region.Region
	http   http.RoundTripper
	log    *slog.Logger

	mu      sync.Mutex
	jobs    map[string]*Job
	wg      sync.WaitGroup
	ctx     context.Context // the node's: imports end with it
	running chan struct{}   // closed once Run has set ctx
}

// New returns an importer into r; rt reaches the source registries (nil:
// the default transport).
func New(r *region.Region, rt http.RoundTripper, log *slog.Logger) *Importer {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &Importer{region: r, http: rt, log: log, jobs: map[string]*Job{}, running: make(chan struct{})}
}

// Run lets imports run until ctx ends, then waits for them to stop.
func (im *Importer) Run(ctx context.Context) error {
	im.mu.Lock()
	im.ctx = ctx
	im.mu.Unlock()
	close(im.running)
	<-ctx.Done()
	im.wg.Wait()
	return nil
}

// Go runs f in the background with the node's context, which ends when
// the node stops (Run waits for f to return then): a fetch the artifact
// cache started for a pull outlives the pull, not the node. It waits up
// to 10 s for Run to start (a node serves from the moment it listens).
func (im *Importer) Go(ctx context.Context, f func(nodeCtx context.Context)) error {
	select {
	case <-im.running:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	nodeCtx := im.ctx
	if nodeCtx == nil || nodeCtx.Err() != nil {
		return ocierr.Unavailable.Withf("this region is not running fetches now (starting or stopping); retry")
	}
	im.wg.Add(1)
	go func() {
		defer im.wg.Done()
		f(nodeCtx)
	}()
	return nil
}

// NodeContext is the node's context while imports run (Run), else the
// background context: work that outlives a request but not the node.
func (im *Importer) NodeContext() context.Context {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.ctx == nil {
		return context.Background()
	}
	return im.ctx
}

// maxJobs bounds the jobs remembered.
const maxJobs = 1000

// Start checks req, starts the import and returns its job.
func (im *Importer) Start(ctx context.Context, req Request) (*Job, error) {
	src, target, tag, err := parse(req)
	if err != nil {
		return nil, err
	}
	// A node serves requests from the moment it listens; Run may start a
	// moment later.
	select {
	case <-im.running:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
	}
	im.mu.Lock()
	nodeCtx := im.ctx
	im.mu.Unlock()
	if nodeCtx == nil || nodeCtx.Err() != nil {
		return nil, ocierr.Unknown.Withf("this region is not running imports now (starting or stopping); retry")
	}
	auth := authn.Anonymous
	if req.Username != "" {
		auth = &authn.Basic{Username: req.Username, Password: req.Password}
	}
	if tag != "" && !req.Force {
		if d, err := im.region.ResolveTag(ctx, target, tag); err == nil {
			// Importing what the tag already holds changes nothing: only a
			// different digest needs --force.
			desc, herr := remote.Head(src, remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(im.http))
			if herr != nil || desc.Digest.String() != d.String() {
				return nil, ocierr.AlreadyExists.Withf("%s:%s exists here (%s); import with --force to overwrite it", target, tag, d)
			}
		}
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	job := &Job{ID: hex.EncodeToString(b[:]), Source: req.Source, State: Running, Started: time.Now().UTC()}
	job.Target = target + ":" + tag
	if tag == "" {
		job.Target = target + "@" + src.Identifier()
	}
	im.mu.Lock()
	if len(im.jobs) >= maxJobs {
		for id, j := range im.jobs {
			if j.State != Running {
				delete(im.jobs, id)
			}
		}
	}
	im.jobs[job.ID] = job
	im.mu.Unlock()
	request := webhook.RequestFrom(ctx)
	request.Method = "IMPORT"
	im.publish(ctx, job.ID)
	im.wg.Add(1)
	go func() {
		defer im.wg.Done()
		jctx := webhook.WithRequest(nodeCtx, &request)
		stop := im.publishing(jctx, job.ID)
		mode := referrersNone
		if req.Referrers {
			mode = referrersRequired
		}
		err := im.run(jctx, job, src, target, tag, auth, mode, nil)
		stop()
		im.mu.Lock()
		job.Finished = time.Now().UTC()
		if err != nil {
			job.State, job.Error = Failed, outbound.Trim(err.Error())
			im.log.WarnContext(jctx, "import failed", "source", req.Source, "target", job.Target, "error", err)
		} else {
			job.State = Succeeded
			im.log.InfoContext(jctx, "imported", "source", req.Source, "target", job.Target, "digest", job.Digest)
		}
		im.mu.Unlock()
		im.publish(context.WithoutCancel(jctx), job.ID)
	}()
	return im.Get(ctx, job.ID)
}

// Fetch imports src into target now, in the caller's request and
// context, and returns its job: the digest stored, the bytes fetched
// (the artifact cache's pull-through): tag "" stores it by digest, untagged. Like an import,
// every manifest and blob is verified by digest and the image is stored
// only whole.
//
// The referrers of what it stores (signatures, SBOMs, attestations) are
// fetched too, where the source lists them (the referrers API, or the
// tag schema's fallback tag); a source that cannot list them does not
// fail the fetch (Job.ReferrersSkipped says why).
//
// Each manifest is handed to onManifest (when set) as soon as it was
// fetched and verified, with the digests of the manifests it lists, and
// its blobs are offered in target while the fetch runs
// (region.OfferBlob): a client that got the manifest pulls its blobs as
// they arrive, before the image is stored whole (the cache's cold pull).
func (im *Importer) Fetch(ctx context.Context, src name.Reference, target, tag string, auth authn.Authenticator, onManifest OnManifest) (Job, error) {
	job := &Job{Source: src.String(), Target: target, State: Running, Started: time.Now().UTC()}
	err := im.run(ctx, job, src, target, tag, auth, referrersBestEffort, onManifest)
	im.mu.Lock()
	defer im.mu.Unlock()
	return *job, err
}

// publish records job id as it is now in the metadata store, where every
// node of the region reads it (Get): a client asking a load balancer for
// its job's progress may reach another node. With one node it is not
// needed, and skipped.
func (im *Importer) publish(ctx context.Context, id string) {
	if !im.region.Shared() {
		return
	}
	job, err := im.local(id)
	if err != nil {
		return
	}
	body, _ := json.Marshal(job)
	if err := im.region.Publish(ctx, "import_jobs", id, string(body)); err != nil && ctx.Err() == nil {
		im.log.WarnContext(ctx, "publish import progress", "job", id, "error", err)
	}
}

// publishing publishes job id every region.PublishInterval until the
// returned stop.
func (im *Importer) publishing(ctx context.Context, id string) (stop func()) {
	if !im.region.Shared() {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		im.region.PublishEvery(ctx, "import_jobs", id, func() (any, bool) {
			job, err := im.local(id)
			return job, err == nil
		})
	}()
	return func() { cancel(); <-done }
}

// Get returns a copy of a job.
func (im *Importer) Get(ctx context.Context, id string) (*Job, error) {
	if j, err := im.local(id); err == nil {
		return j, nil
	}
	if im.region.Shared() {
		body, node, at, err := im.region.Published(ctx, "import_jobs", id)
		if err == nil {
			var j Job
			if err := json.Unmarshal([]byte(body), &j); err != nil {
				return nil, err
			}
			if j.State == Running && time.Since(at) > region.PublishedStale {
				j.State = Failed
				j.Error = fmt.Sprintf("node %s, which ran the import, stopped reporting %s ago; start the import again", node, time.Since(at).Round(time.Second))
			}
			return &j, nil
		}
	}
	return nil, ocierr.NameUnknown.Withf("no import %s in this region (a job is kept by its region until the node that ran it restarts)", id)
}

// local returns a copy of a job this node runs or ran.
func (im *Importer) local(id string) (*Job, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	j, ok := im.jobs[id]
	if !ok {
		return nil, errors.New("not here")
	}
	c := *j
	return &c, nil
}

func (im *Importer) update(fn func()) {
	im.mu.Lock()
	fn()
	im.mu.Unlock()
}

// parse reads the request: the source reference, the target repository
// and tag ("" when the import is by digest).
func parse(req Request) (name.Reference, string, string, error) {
	source := req.Source
	var opts []name.Option
	if s, ok := strings.CutPrefix(source, "http://"); ok {
		source, opts = s, append(opts, name.Insecure)
	}
	source = strings.TrimPrefix(source, "https://")
	src, err := name.ParseReference(source, append(opts, name.StrictValidation)...)
	if err != nil {
		return nil, "", "", ocierr.RequestInvalid.Withf("source %q: %v; give registry/repository:tag or registry/repository@digest", req.Source, err)
	}
	target, tag := src.Context().RepositoryStr(), ""
	if t, ok := src.(name.Tag); ok {
		tag = t.TagStr()
	}
	if req.Image != "" {
		repo, ref, hasRef := strings.Cut(req.Image, ":")
		if strings.Contains(req.Image, "@") {
			return nil, "", "", ocierr.RequestInvalid.Withf("image %q: give repository[:tag]; the digest is the source's", req.Image)
		}
		target = repo
		if hasRef {
			tag = ref
		}
	}
	if err := oci.ValidateRepository(target); err != nil {
		return nil, "", "", ocierr.NameInvalid.Withf("target repository %q: %v", target, err)
	}
	if tag != "" {
		if err := oci.ValidateTag(tag); err != nil {
			return nil, "", "", ocierr.RequestInvalid.Withf("target tag %q: %v", tag, err)
		}
	}
	return src, target, tag, nil
}

// manifestToCopy is one manifest of the import, children before parents.
type manifestToCopy struct {
	digest    digest.Digest
	mediaType string
	raw       []byte
	blobs     []oci.Descriptor
}

// run plans (every manifest, so the job knows its size), copies every
// blob not here yet, then stores manifests children first and tags the
// top one.
// Which referrers run copies: none, all (failing when the source cannot
// list them: an import asked for them), or those the source lists (the
// cache: a source without the referrers API still serves the image).
type referrersMode int

// OnManifest is told of each manifest a fetch got from its source,
// verified, with the digests of the manifests it lists (an index's
// platforms), before any of those is fetched.
type OnManifest func(d digest.Digest, mediaType string, raw []byte, children []digest.Digest)

// failedOffersKept is how long the blobs of a fetch that failed stay
// offered (region.OfferBlob) after it.
const failedOffersKept = 2 * time.Minute

// blobJobs is how many blobs a job copies at once.
const blobJobs = 4

const (
	referrersNone referrersMode = iota
	referrersRequired
	referrersBestEffort
)

func (im *Importer) run(ctx context.Context, job *Job, src name.Reference, target, tag string, auth authn.Authenticator, referrers referrersMode, onManifest OnManifest) (err error) {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(im.http)}
	// One puller for the whole job: the source is pinged and its token
	// fetched once, not again before every manifest, referrers list and
	// blob (each a round trip to a registry that may be an ocean away).
	puller, err := remote.NewPuller(opts...)
	if err != nil {
		return err
	}
	opts = append(opts, remote.Reuse(puller))
	repo := src.Context()
	var plan []manifestToCopy
	seen := map[digest.Digest]bool{}
	var withdraw []func()
	defer func() {
		end := func() {
			for _, w := range withdraw {
				w()
			}
		}
		if err != nil && len(withdraw) > 0 {
			// A client may hold a manifest handed on: its blobs stay
			// offered a while, each fetched alone when asked for, so its
			// pull gets the upstream's error or the blob, never a
			// BLOB_UNKNOWN for a manifest it was just served.
			time.AfterFunc(failedOffersKept, end)
			return
		}
		end()
	}()
	var walk func(ref name.Reference) (digest.Digest, error)
	walk = func(ref name.Reference) (digest.Digest, error) {
		desc, err := remote.Get(ref, opts...)
		if err != nil {
			return "", fmt.Errorf("get %s: %w", ref, err)
		}
		d := digest.Digest(desc.Digest.String())
		if d.Validate() != nil || d.Algorithm().FromBytes(desc.Manifest) != d {
			return "", fmt.Errorf("manifest %s from the source does not hash to its digest", ref)
		}
		if seen[d] {
			return d, nil
		}
		seen[d] = true
		m, err := oci.ParseManifest(string(desc.MediaType), desc.Manifest)
		if err != nil {
			return "", fmt.Errorf("manifest %s: %w", ref, err)
		}
		if onManifest != nil {
			// Its blobs can be asked for as soon as it is handed on.
			for _, b := range m.Blobs() {
				withdraw = append(withdraw, im.region.OfferBlob(target, b.Digest, b.Size, im.opener(job, repo, b.Digest, opts)))
			}
			children := make([]digest.Digest, len(m.Manifests))
			for i, c := range m.Manifests {
				children[i] = c.Digest
			}
			onManifest(d, m.MediaType, desc.Manifest, children)
		}
		for _, c := range m.Manifests {
			if _, err := walk(repo.Digest(c.Digest.String())); err != nil {
				return "", err
			}
		}
		plan = append(plan, manifestToCopy{digest: d, mediaType: m.MediaType, raw: desc.Manifest, blobs: m.Blobs()})
		return d, nil
	}
	top, err := walk(src)
	if err != nil {
		return err
	}
	// The image's blobs are copied while its referrers are listed (a round
	// trip saved), then the referrers' own blobs. Every blob stays leased
	// until the manifests that link it are stored: garbage collection's
	// sweep must not take bytes copied a minute ago for unreferenced.
	done := map[digest.Digest]bool{}
	pending := func() map[digest.Digest]int64 { // in plan, not yet copied
		blobs := map[digest.Digest]int64{}
		for _, m := range plan {
			for _, b := range m.blobs {
				if !done[b.Digest] {
					blobs[b.Digest] = b.Size
				}
			}
		}
		im.update(func() {
			job.Digest, job.Manifests, job.Blobs = top.String(), len(plan), job.Blobs+len(blobs)
			for _, size := range blobs {
				job.Bytes += size
			}
		})
		for d := range blobs {
			done[d] = true
		}
		return blobs
	}
	var leased []func()
	defer func() {
		for _, release := range leased {
			release()
		}
	}()
	for _, m := range plan {
		for _, b := range m.blobs {
			leased = append(leased, im.region.Lease(b.Digest))
		}
	}
	first := pending() // read before the referrers' walk appends to plan
	copied := make(chan error, 1)
	go func() { copied <- im.copyBlobs(ctx, job, repo, target, first, opts) }()
	var rerr error
	if referrers != referrersNone {
		rerr = im.walkReferrers(ctx, job, src, &plan, walk, referrers, opts)
	}
	if err := <-copied; err != nil {
		return err
	}
	if rerr != nil {
		return rerr
	}
	for _, m := range plan {
		for _, b := range m.blobs {
			if !done[b.Digest] {
				leased = append(leased, im.region.Lease(b.Digest))
			}
		}
	}
	if err := im.copyBlobs(ctx, job, repo, target, pending(), opts); err != nil {
		return err
	}
	for _, m := range plan {
		ref := m.digest.String()
		if m.digest == top && tag != "" {
			ref = tag
		}
		if _, err := im.region.PutManifest(ctx, target, ref, m.mediaType, m.raw); err != nil {
			return fmt.Errorf("store manifest %s: %w", m.digest, err)
		}
	}
	return nil
}

// walkReferrers adds to plan the referrers of each manifest in it (a
// signature may name one platform), and the referrers of those (a
// signature of an SBOM), each once. A source that cannot list them fails
// the job unless mode is best effort, which notes it and goes on.
func (im *Importer) walkReferrers(ctx context.Context, job *Job, src name.Reference, plan *[]manifestToCopy,
	walk func(name.Reference) (digest.Digest, error), mode referrersMode, opts []remote.Option) error {
	repo := src.Context()
	asked := map[digest.Digest]bool{}
	for i := 0; i < len(*plan); i++ {
		d := (*plan)[i].digest
		if asked[d] {
			continue
		}
		asked[d] = true
		idx, err := remote.Referrers(repo.Digest(d.String()), opts...)
		var list *v1.IndexManifest
		if err == nil {
			list, err = idx.IndexManifest()
		}
		if err != nil && mode == referrersBestEffort {
			im.update(func() { job.ReferrersSkipped = fmt.Sprintf("referrers of %s: %v", d, err) })
			im.log.WarnContext(ctx, "referrers not fetched: the source could not list them", "source", src.String(), "digest", d, "error", err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("referrers of %s: %w", d, err)
		}
		for _, r := range list.Manifests {
			if _, err := walk(repo.Digest(r.Digest.String())); err != nil {
				return err
			}
		}
	}
	return nil
}
