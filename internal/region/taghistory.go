package region

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/webhook"
)

// Tag history and point-in-time restore (meta/taghistory.go records the
// moves). A restore to a time sets every tag of a repository to what it
// was then, each as a client's push or delete here: new versions, which
// replicate and win everywhere as any write does.

// actorOf names who asks for the write ctx carries: the authenticated
// client ("anonymous" with none), retention, or "" for what is not a
// request (a peer's write applied here).
func actorOf(ctx context.Context) string {
	rq := webhook.RequestFrom(ctx)
	switch {
	case rq.Method == "":
		return ""
	case rq.Actor == "":
		return "anonymous"
	}
	return rq.Actor
}

// TagHistoryEntry is one move of a tag, as listed.
type TagHistoryEntry struct {
	meta.TagMove
	At     time.Time `json:"at"`     // the move's version time
	Region string    `json:"region"` // the region that made it
	// Of is the move's version (hlc.Version.String): moves of one tag
	// win in its order.
	Of string `json:"version"`
}

// maxHistoryListed bounds a history listing.
const maxHistoryListed = 10000

// TagHistory lists the moves of repo's tags this region recorded (of tag
// alone when set), by tag and version.
func (r *Region) TagHistory(ctx context.Context, repo, tag string) ([]TagHistoryEntry, error) {
	moves, err := r.db.TagHistory(ctx, repo, tag, maxHistoryListed)
	if err != nil {
		return nil, err
	}
	out := []TagHistoryEntry{}
	for _, m := range moves {
		if m.Version.IsZero() {
			continue // "no such tag before": a marker, not a move
		}
		out = append(out, TagHistoryEntry{TagMove: m, At: m.Version.Wall().UTC(), Region: m.Version.Region, Of: m.Version.String()})
	}
	return out, nil
}

// Step is what a restore to a time does to one tag.
type Step struct {
	Tag string `json:"tag"`
	// Now is the tag's digest now ("" when it does not exist); Then at the
	// time ("" when it did not exist).
	Now  digest.Digest `json:"now,omitempty"`
	Then digest.Digest `json:"then,omitempty"`
	// Action: "keep" (the same, or --keep-newer), "set", "delete", or
	// "unknown" (moved while no history was kept: left as it is).
	Action string `json:"action"`
}

// planTimeRestore decides, for every tag in history or now, what it was at
// time at and what to do: pure. history holds every recorded move (a
// tag's first recorded move comes with the state it found, a marker at
// version zero when there was none); now maps each live tag to its
// digest with the version it was set at.
func planTimeRestore(history []meta.TagMove, now map[string]meta.TagMove, at time.Time, keepNewer bool) []Step {
	byTag := map[string][]meta.TagMove{}
	for _, m := range history {
		byTag[m.Tag] = append(byTag[m.Tag], m)
	}
	tags := map[string]bool{}
	for t := range byTag {
		tags[t] = true
	}
	for t := range now {
		tags[t] = true
	}
	var out []Step
	for _, tag := range slices.Sorted(maps.Keys(tags)) {
		cur, live := now[tag]
		s := Step{Tag: tag}
		if live {
			s.Now = cur.Digest
		}
		then, known := stateAt(byTag[tag], at)
		if !known {
			// No move recorded at or before at: unchanged since, if its
			// current state is older than at; else moved while no history
			// was kept.
			if live && !cur.Version.Wall().After(at) {
				then, known = cur, true
			} else if !live && len(byTag[tag]) == 0 {
				continue
			}
		}
		switch {
		case !known:
			s.Action = "unknown"
		case !then.Deleted:
			s.Then = then.Digest
			s.Action = "set"
			if live && cur.Digest == then.Digest {
				s.Action = "keep"
			}
		case live && keepNewer:
			s.Action = "keep"
		case live:
			s.Action = "delete"
		default:
			s.Action = "keep"
		}
		out = append(out, s)
	}
	return out
}

// stateAt is the latest of moves at or before at (by version).
func stateAt(moves []meta.TagMove, at time.Time) (meta.TagMove, bool) {
	var best meta.TagMove
	found := false
	for _, m := range moves {
		if m.Version.Wall().After(at) {
			continue
		}
		if !found || best.Version.Less(m.Version) {
			best, found = m, true
		}
	}
	return best, found
}

// TimeRestore is a restore to a time: its plan, and whether it was
// carried out.
type TimeRestore struct {
	Repository string    `json:"repository"`
	At         time.Time `json:"at"`
	Plan       []Step    `json:"plan"`
	DryRun     bool      `json:"dryRun"`
	Region     string    `json:"region"`
}

// RestoreToTime sets every tag of repo to what it was at time at (tags
// that did not exist then are deleted unless keepNewer), as writes here
// that replicate; with dryRun it only plans. at must be within the
// history kept. A tag whose manifest then is neither live nor restorable
// here fails the restore before anything is written.
func (r *Region) RestoreToTime(ctx context.Context, repo string, at time.Time, dryRun, keepNewer bool) (TimeRestore, error) {
	out := TimeRestore{Repository: repo, At: at.UTC(), DryRun: dryRun, Region: r.cfg.Name, Plan: []Step{}}
	p, err := r.SoftDeletePolicy(ctx)
	if err != nil {
		return out, err
	}
	if !p.Enabled() {
		return out, ocierr.Unsupported.Withf("soft delete is disabled: no tag history is kept (georeg config soft-delete update --status enabled)")
	}
	if horizon := r.now().Add(-p.HistoryPeriod()); at.Before(horizon) || at.After(r.now()) {
		return out, ocierr.RequestInvalid.Withf("time %s: give one within the history kept, %s to now", at.UTC().Format(time.RFC3339), horizon.UTC().Format(time.RFC3339))
	}
	history, err := r.db.TagHistory(ctx, repo, "", 1<<30)
	if err != nil {
		return out, err
	}
	current, err := r.db.TagStates(ctx, repo)
	if err != nil {
		return out, err
	}
	now := map[string]meta.TagMove{}
	for _, t := range current {
		if !t.Deleted {
			now[t.Name] = meta.TagMove{Tag: t.Name, Digest: t.Digest, Version: t.Version}
		}
	}
	out.Plan = planTimeRestore(history, now, at, keepNewer)
	// Every manifest to set must be here, live or restorable.
	payloads := map[digest.Digest]*meta.Manifest{}
	for _, s := range out.Plan {
		if s.Action != "set" || payloads[s.Then] != nil {
			continue
		}
		m, err := r.db.GetManifest(ctx, repo, s.Then)
		if isNotFound(err) {
			var kept meta.DeletedManifest
			if kept, err = r.db.DeletedManifest(ctx, repo, s.Then); err == nil {
				m = &meta.Manifest{Digest: kept.Digest, MediaType: kept.MediaType, Payload: kept.Payload}
			}
		}
		if isNotFound(err) {
			return out, ocierr.ManifestUnknown.WithDetail(
				fmt.Sprintf("tag %s was %s at %s, which region %s neither holds nor keeps restorable (purged, or never here): nothing was changed", s.Tag, s.Then, at.UTC().Format(time.RFC3339), r.cfg.Name),
				map[string]string{"tag": s.Tag, "digest": s.Then.String()})
		}
		if err != nil {
			return out, err
		}
		payloads[s.Then] = m
	}
	if dryRun {
		return out, nil
	}
	for _, s := range out.Plan {
		switch s.Action {
		case "set":
			m := payloads[s.Then]
			if _, err := r.PutManifest(ctx, repo, s.Tag, m.MediaType, m.Payload); err != nil {
				return out, fmt.Errorf("set %s to %s: %w", s.Tag, s.Then, err)
			}
		case "delete":
			if err := r.DeleteManifest(ctx, repo, s.Tag); err != nil {
				return out, fmt.Errorf("delete %s: %w", s.Tag, err)
			}
		}
	}
	return out, nil
}
