// Package replicate makes a region converge with its peers: it follows
// each peer's change feed from a durable cursor and applies every record in
// the order DESIGN.md fixes (blobs, child manifests, the manifest, the
// tag), fetching content from the peer over its OCI API, verified by
// digest.
//
// Per peer, a follower is a loop over a small state machine:
//
//	      +--------- page of records ---------+
//	      v                                   |
//	[polling] --fetch error--> [backing off] --+
//	      |                         ^
//	      +-- record fails to apply-+   (same record retried: the cursor
//	                                     moves only when it is applied)
//
// Every apply is idempotent and moves the cursor in its own transaction, so
// a crash at any point resumes exactly where it stopped, and a record seen
// twice changes nothing. Backoff doubles from 100 ms to 30 s with jitter
// and never gives up: a peer down for an hour is caught up when it returns.
// No request has a fixed timeout that would kill a 20 GiB layer; a broken
// blob transfer resumes with a Range from what arrived.
package replicate
