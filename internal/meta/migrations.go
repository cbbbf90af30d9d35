package meta

// migrations bring a store made by an earlier version up to the schema,
// in order; the region_state row "schema" counts those applied. Each runs
// once, in the transaction that counts it.
var migrations = []string{
	// Upload sessions carry their checkpoint (hash state, size, the
	// content store's staging state) and a generation, so any node of a
	// region continues a session another started.
	`ALTER TABLE uploads ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
	 ALTER TABLE uploads ADD COLUMN checkpoint {{bytes}};
	 ALTER TABLE uploads ADD COLUMN gen BIGINT NOT NULL DEFAULT 0`,
	// A delivery names the webhook it was queued for by its creation time
	// too, so a webhook deleted and made again under its name gets none of
	// its predecessor's.
	`ALTER TABLE webhook_deliveries ADD COLUMN webhook_created BIGINT NOT NULL DEFAULT 0`,
	// A blob link carries the version of the newest link record applied
	// (a push, a mount, a peer's blob record), so a blob delete
	// (blob_tombstones) and a link resolve last-writer-wins in every
	// region (DESIGN invariant 9). Links made before have version 0: older
	// than any delete.
	`ALTER TABLE blobs ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
	 ALTER TABLE blobs ADD COLUMN origin TEXT NOT NULL DEFAULT ''`,
	// A region's own token-signing keys: private, never replicated (their
	// public halves are signing-key settings).
	`CREATE TABLE IF NOT EXISTS local_keys (
		kid     TEXT PRIMARY KEY,
		pem     TEXT NOT NULL,
		created BIGINT NOT NULL
	)`,
	// Each repository's summary generation, moved by every write of its
	// tags, manifests or blob tombstones (summarytree.go), seeded for the
	// repositories a store already holds.
	`CREATE TABLE IF NOT EXISTS repo_gens (
		repo TEXT PRIMARY KEY,
		gen  BIGINT NOT NULL
	);
	INSERT INTO repo_gens (repo, gen)
		SELECT repo, 1 FROM (SELECT repo FROM tags UNION SELECT repo FROM manifests UNION SELECT repo FROM blob_tombstones) AS r
		WHERE true ON CONFLICT (repo) DO NOTHING`,
	// Each feed record carries the feed's blob bytes up to and including
	// it, so a peer's byte counts (FeedBytes) are two lookups, not a scan.
	`ALTER TABLE feed ADD COLUMN blob_bytes BIGINT NOT NULL DEFAULT 0;
	UPDATE feed SET blob_bytes = w.c
		FROM (SELECT seq, SUM(CASE WHEN kind = 'blob' THEN size ELSE 0 END) OVER (ORDER BY seq) AS c FROM feed) AS w
		WHERE feed.seq = w.seq`,
	// Bytes served and received, per hour, node, kind and peer
	// (traffic.go).
	`CREATE TABLE IF NOT EXISTS traffic (
		hour  BIGINT NOT NULL,
		node  TEXT NOT NULL,
		kind  TEXT NOT NULL,
		peer  TEXT NOT NULL,
		bytes BIGINT NOT NULL,
		PRIMARY KEY (hour, node, kind, peer)
	)`,
	// Manifests kept restorable by the soft-delete policy
	// (softdelete.go): a region's own, not replicated.
	`CREATE TABLE IF NOT EXISTS deleted_manifests (
		repo            TEXT NOT NULL,
		digest          TEXT NOT NULL,
		media_type      TEXT NOT NULL,
		size            BIGINT NOT NULL,
		payload         {{bytes}} NOT NULL,
		tags            TEXT NOT NULL,
		deleted_version BIGINT NOT NULL,
		deleted_origin  TEXT NOT NULL,
		deleted_by      TEXT NOT NULL,
		kept_at         BIGINT NOT NULL,
		PRIMARY KEY (repo, digest)
	)`,
	// Every tag write this region applied while soft delete was on
	// (tag_history.go): a region's own, not replicated.
	`CREATE TABLE IF NOT EXISTS tag_history (
		repo        TEXT NOT NULL,
		tag         TEXT NOT NULL,
		version     BIGINT NOT NULL,
		origin      TEXT NOT NULL,
		digest      TEXT NOT NULL,
		deleted     INTEGER NOT NULL,
		actor       TEXT NOT NULL,
		recorded_at BIGINT NOT NULL,
		PRIMARY KEY (repo, tag, version, origin)
	)`,
	// Presence by marks (presence.go): a row may say that every region
	// that applied its region's feed through seq holds the manifest, and
	// peers' published applied marks are kept; acknowledgement records,
	// one per manifest per region, are no longer written.
	`ALTER TABLE presence ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
	CREATE TABLE IF NOT EXISTS peer_applied (
		region     TEXT NOT NULL,
		origin     TEXT NOT NULL,
		seq        BIGINT NOT NULL,
		updated_at BIGINT NOT NULL,
		heard_at   BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (region, origin)
	);
	DROP TABLE IF EXISTS acks`,
	// When each manifest of a cached repository was last pulled here, in
	// Unix seconds (pulls.go): a region's own, not replicated; the
	// artifact cache evicts what no region pulled for a rule's period.
	`CREATE TABLE IF NOT EXISTS pulls (
		repo      TEXT NOT NULL,
		digest    TEXT NOT NULL,
		pulled_at BIGINT NOT NULL,
		PRIMARY KEY (repo, digest)
	)`,
	// The region's data keys for encryption at rest (datakeys.go), each
	// wrapped by the key service's key-encryption key kek_id: a region's
	// own, never replicated, never in a snapshot; the newest is current.
	`CREATE TABLE IF NOT EXISTS data_keys (
		id         TEXT PRIMARY KEY,
		wrapped    {{bytes}} NOT NULL,
		kek_id     TEXT NOT NULL,
		created_at BIGINT NOT NULL
	)`,
}
