// Package region holds the operations of one region node: push, pull and
// delete of blobs and manifests, upload sessions, tags and referrers. It is
// the only writer of the metadata store, and it turns lower errors into OCI
// errors whose messages say what to do.
//
// Invariants kept here (numbers from docs/design.md):
//
//   - 1, content is verified: a blob is linked only after content.Store
//     committed it under the digest of the bytes received; a manifest is
//     stored only if it parses and its digest matches the reference.
//   - 2, nothing partial is visible: a manifest PUT checks, inside the same
//     write transaction that stores it, that every blob and child manifest
//     it references is present in the repository.
//   - 5, caches follow writes: every write that changes what a manifest or
//     tag read returns invalidates the cache in the same call, and a read
//     never caches a value older than the latest invalidation.
//   - 8, no data is lost: a manifest PUT returns only after its
//     transaction committed with synchronous=FULL, and its blobs were
//     fsynced when their uploads completed.
package region
