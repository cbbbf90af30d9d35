package meta

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A snapshot is a region's replicated state, read in one consistent read
// transaction, with the feed positions it reflects: a region that joins
// loads it instead of replaying every region's feed from the start, then
// follows the feeds from those positions (docs/design.md, "Joining from
// a snapshot"). Region-local state (tag history, soft-deleted copies,
// webhook deliveries, audit, traffic, cache pulls) is not in it; settings travel as
// they do for any follower (settings/state).

// SnapshotFormat is the version of the snapshot's layout. Format 2 adds
// {"x": hex} for bytes (what a SQLite store encodes itself, having no
// base64); format 3 {"t": text} for bytes that are valid UTF-8 without a
// NUL (a SQLite store's manifests, JSON themselves: half the size of
// their hex). A joiner reads formats 1 to 3 and asks for the latest it
// reads (?format=N on feed.SnapshotPath); a region serves a joiner that
// names none format 2, which every earlier version reads.
const SnapshotFormat = 3

// SnapshotFormatDefault is the format served to a joiner that names none.
const SnapshotFormatDefault = 2

// SnapshotFormatRead reports whether a joiner loads a snapshot of format.
func SnapshotFormatRead(format int) bool { return format >= 1 && format <= SnapshotFormat }

// SnapshotFormatServed is the format a region serves to a joiner that
// reads formats up to asked (0: it named none): the latest both know;
// false when that is none this region writes (below format 2).
func SnapshotFormatServed(asked int) (int, bool) {
	if asked == 0 {
		return SnapshotFormatDefault, true
	}
	f := min(asked, SnapshotFormat)
	return f, f >= SnapshotFormatDefault
}

// SnapshotHeader is the first line of a snapshot.
type SnapshotHeader struct {
	Format int    `json:"format"`
	Schema int    `json:"schema"` // migrations of the store it was read from (SchemaVersion)
	Region string `json:"region"`
	// Head is the serving region's own feed head; Applied how far it had
	// applied each other region's feed in order (AppliedMarks). The rows
	// reflect every record up to these, and maybe some after (a record
	// past a parked one): applying those again changes nothing.
	Head    int64            `json:"head"`
	Applied map[string]int64 `json:"applied"`
}

// SnapshotRepo is one repository's rows, table by table: what a region
// loads in one transaction, so none of its manifests is visible before
// its blob links and child manifests.
type SnapshotRepo struct {
	Repo   string                `json:"repo"`
	Tables map[string]*TableRows `json:"tables"`
}

// TableRows are rows of one table, each value a JSON number, string,
// null, or {"b": base64} or {"x": hex} for bytes.
type TableRows struct {
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
	// Encoded, when set, is the rows already encoded as a JSON array (a
	// SQLite store encodes them itself: sqliteSnapshotQuery); AppendJSON
	// writes it in place of Rows.
	Encoded string `json:"-"`
}

// snapshotTables are the tables a snapshot carries, in load order, with
// the column naming the repository and the primary key; versioned ones
// resolve a row the joining region holds already by last-writer-wins.
var snapshotTables = []struct {
	name, repoCol string
	key           []string
	versioned     bool
}{
	{"repositories", "name", []string{"name"}, false},
	{"blobs", "repo", []string{"repo", "digest"}, true},
	{"blob_tombstones", "repo", []string{"repo", "digest"}, true},
	{"manifests", "repo", []string{"repo", "digest"}, true},
	{"tags", "repo", []string{"repo", "name"}, true},
	{"presence", "repo", []string{"repo", "digest", "region"}, false},
}

// SchemaVersion is the number of migrations this version of georeg
// applies: two regions exchange snapshots only when theirs agree.
func SchemaVersion() int { return len(migrations) }

// Snapshot reads the store's replicated state in one read transaction:
// header, then each repository's rows in name order, in format (2 or 3;
// SnapshotFormatServed).
func (db *DB) Snapshot(ctx context.Context, region string, format int, header func(SnapshotHeader) error, emit func(*SnapshotRepo) error) error {
	if format < SnapshotFormatDefault || format > SnapshotFormat {
		return fmt.Errorf("snapshot format %d: this version writes formats %d to %d", format, SnapshotFormatDefault, SnapshotFormat)
	}
	opts := &sql.TxOptions{ReadOnly: true}
	if db.dialect == postgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := db.r.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin snapshot: %w", err)
	}
	defer tx.Rollback()
	h := SnapshotHeader{Format: format, Schema: SchemaVersion(), Region: region, Applied: map[string]int64{}}
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM feed`).Scan(&h.Head); err != nil {
		return err
	}
	if h.Applied, err = appliedMarks(ctx, tx); err != nil {
		return err
	}
	if err := header(h); err != nil {
		return err
	}
	// The repositories' own rows are read in one query (the first
	// table), the other tables' once per repository by a query prepared
	// once, not parsed again per repository.
	rows, err := tx.QueryContext(ctx, `SELECT * FROM repositories ORDER BY name`)
	if err != nil {
		return err
	}
	repoRows, err := scanTable(rows)
	if err != nil {
		return fmt.Errorf("snapshot repositories: %w", err)
	}
	nameAt := slices.Index(repoRows.Columns, snapshotTables[0].repoCol)
	if nameAt < 0 {
		return fmt.Errorf("snapshot repositories: no %s column", snapshotTables[0].repoCol)
	}
	stmts := make([]*sql.Stmt, len(snapshotTables))
	safe := make([]string, len(snapshotTables)) // a SQLite table's query testing every value, until used
	cols := make([][]string, len(snapshotTables))
	for i, t := range snapshotTables[1:] {
		q := `SELECT * FROM ` + t.name + ` WHERE ` + t.repoCol + ` = $1`
		if db.dialect == sqlite {
			if q, safe[i+1], cols[i+1], err = sqliteSnapshotQuery(ctx, tx, t.name, t.repoCol, format); err != nil {
				return fmt.Errorf("snapshot %s: %w", t.name, err)
			}
		}
		if stmts[i+1], err = tx.PrepareContext(ctx, q); err != nil {
			return fmt.Errorf("snapshot %s: %w", t.name, err)
		}
		defer stmts[i+1].Close()
	}
	for _, row := range repoRows.Rows {
		repo, ok := row[nameAt].(string)
		if !ok {
			return fmt.Errorf("snapshot repositories: a name that is a %T", row[nameAt])
		}
		out := &SnapshotRepo{Repo: repo, Tables: map[string]*TableRows{
			snapshotTables[0].name: {Columns: repoRows.Columns, Rows: [][]any{row}},
		}}
		for i, t := range snapshotTables[1:] {
			if cols[i+1] != nil {
				// Read as a string: the driver's one copy of the value,
				// no other (a []byte would be copied again from it).
				var rows string
				if err := stmts[i+1].QueryRowContext(ctx, repo).Scan(&rows); err != nil {
					if safe[i+1] == "" {
						return fmt.Errorf("snapshot %s of %s: %w", t.name, repo, err)
					}
					// Bytes in a column not declared BLOB (or another
					// failure, which the safe query meets too): the table
					// is read with every value tested from here on, so
					// such rows cost one read more, not one per
					// repository.
					s, err := tx.PrepareContext(ctx, safe[i+1])
					if err != nil {
						return fmt.Errorf("snapshot %s: %w", t.name, err)
					}
					defer s.Close()
					stmts[i+1], safe[i+1] = s, ""
					if err := s.QueryRowContext(ctx, repo).Scan(&rows); err != nil {
						return fmt.Errorf("snapshot %s of %s: %w", t.name, repo, err)
					}
				}
				if rows != "[]" {
					out.Tables[t.name] = &TableRows{Columns: cols[i+1], Encoded: rows}
				}
				continue
			}
			rows, err := stmts[i+1].QueryContext(ctx, repo)
			if err != nil {
				return fmt.Errorf("snapshot %s of %s: %w", t.name, repo, err)
			}
			tr, err := scanTable(rows)
			if err != nil {
				return fmt.Errorf("snapshot %s of %s: %w", t.name, repo, err)
			}
			if len(tr.Rows) > 0 {
				out.Tables[t.name] = tr
			}
		}
		if err := emit(out); err != nil {
			return err
		}
	}
	return nil
}

// sqliteSnapshotQuery returns the queries that read table's rows of one
// repository (the first argument) from a SQLite store as one JSON array,
// encoded by SQLite itself, and the columns of its rows: stepping the
// driver through each row and column was most of what a Ready region
// spent serving a snapshot (docs/performance.md). Bytes are {"x": hex}
// (SQLite has no base64), or from format 3 {"t": text} when they are
// text JSON carries exactly (sqliteTextBytes).
//
// SQLite keeps bytes written to any column as bytes, whatever the
// column's type, and JSON cannot hold them: by the value's type, not
// the column's, safe tests every value. fast tests only the values of
// columns declared BLOB (a fifth of the reading's CPU was the others'
// tests): a byte value in another column makes it fail ("JSON cannot
// hold BLOB values"), and the caller reads that repository's rows, and
// the table's from then on, with safe instead.
func sqliteSnapshotQuery(ctx context.Context, tx *sql.Tx, table, repoCol string, format int) (fast, safe string, cols []string, err error) {
	rows, err := tx.QueryContext(ctx, `SELECT name, type FROM pragma_table_info('`+table+`') ORDER BY cid`)
	if err != nil {
		return "", "", nil, err
	}
	defer rows.Close()
	var fastVals, safeVals []string
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return "", "", nil, err
		}
		cols = append(cols, name)
		text := ""
		if format >= 3 {
			text = ` WHEN ` + sqliteTextBytes + `(` + name + `) THEN json_object('t', CAST(` + name + ` AS TEXT))`
		}
		tested := `CASE WHEN typeof(` + name + `) != 'blob' THEN ` + name + text + ` ELSE json_object('x', hex(` + name + `)) END`
		safeVals = append(safeVals, tested)
		if strings.EqualFold(typ, "BLOB") {
			fastVals = append(fastVals, tested)
		} else {
			fastVals = append(fastVals, name)
		}
	}
	if err := rows.Err(); err != nil {
		return "", "", nil, err
	}
	if len(cols) == 0 {
		return "", "", nil, fmt.Errorf("no table %s", table)
	}
	query := func(vals []string) string {
		return `SELECT json_group_array(json_array(` + strings.Join(vals, ", ") + `)) FROM ` + table + ` WHERE ` + repoCol + ` = $1`
	}
	return query(fastVals), query(safeVals), cols, nil
}

// scanTable reads rows into TableRows, and closes them.
func scanTable(rows *sql.Rows) (*TableRows, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := &TableRows{Columns: cols}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = snapshotBytes(b)
			}
		}
		out.Rows = append(out.Rows, vals)
	}
	return out, rows.Err()
}

// appliedMarks is DB.AppliedMarks in a read transaction.
func appliedMarks(ctx context.Context, q queryer) (map[string]int64, error) {
	rows, err := q.QueryContext(ctx, appliedMarksQuery)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var peer string
		var seq int64
		var parked *int64
		if err := rows.Scan(&peer, &seq, &parked); err != nil {
			return nil, err
		}
		if parked != nil && *parked-1 < seq {
			seq = *parked - 1
		}
		out[peer] = seq
	}
	return out, rows.Err()
}

const appliedMarksQuery = `
	SELECT c.peer, c.seq, (SELECT MIN(p.seq) FROM parked p WHERE p.peer = c.peer) FROM peer_cursors c`

// LoadSnapshotRepo writes one repository's rows of a peer's snapshot, in
// this (region-wide) transaction: rows this store lacks are added; a
// versioned row it holds already is replaced only by a later version
// (last-writer-wins, as every replicated write). Every live manifest is
// then present here (self). Columns are checked against this store's own.
func (tx *Tx) LoadSnapshotRepo(ctx context.Context, sr *SnapshotRepo, self string, now time.Time) error {
	if err := tx.writesRegion("LoadSnapshotRepo"); err != nil {
		return err
	}
	for name := range sr.Tables {
		known := false
		for _, t := range snapshotTables {
			known = known || t.name == name
		}
		if !known {
			return fmt.Errorf("snapshot of %s: unknown table %q", sr.Repo, name)
		}
	}
	for _, t := range snapshotTables {
		tr := sr.Tables[t.name]
		if tr == nil {
			continue
		}
		local, err := tx.columns(ctx, t.name)
		if err != nil {
			return err
		}
		repoAt := -1
		for i, c := range tr.Columns {
			if !slices.Contains(local, c) {
				return fmt.Errorf("snapshot of %s: table %s has no column %q here", sr.Repo, t.name, c)
			}
			if c == t.repoCol {
				repoAt = i
			}
		}
		if repoAt < 0 {
			return fmt.Errorf("snapshot of %s: table %s without its %s column", sr.Repo, t.name, t.repoCol)
		}
		q := upsertQuery(t.name, tr.Columns, t.key, t.versioned)
		for _, row := range tr.Rows {
			if len(row) != len(tr.Columns) {
				return fmt.Errorf("snapshot of %s: a row of %s with %d values for %d columns", sr.Repo, t.name, len(row), len(tr.Columns))
			}
			args, err := snapshotArgs(row)
			if err != nil {
				return fmt.Errorf("snapshot of %s, table %s: %w", sr.Repo, t.name, err)
			}
			if s, _ := args[repoAt].(string); s != sr.Repo {
				return fmt.Errorf("snapshot of %s: a row of %s names repository %v", sr.Repo, t.name, args[repoAt])
			}
			if _, err := tx.exec(ctx, q, args...); err != nil {
				return fmt.Errorf("load %s of %s: %w", t.name, sr.Repo, err)
			}
		}
	}
	if _, err := tx.exec(ctx, `
		INSERT INTO presence (repo, digest, region, since, seq)
		SELECT repo, digest, $2, $3, 0 FROM manifests WHERE repo = $1 AND deleted = 0
		ON CONFLICT (repo, digest, region) DO NOTHING`, sr.Repo, self, now.UnixMilli()); err != nil {
		return err
	}
	tx.summaryChanged(sr.Repo)
	tx.changed(sr.Repo)
	return nil
}

// columns lists table's columns in this store.
func (tx *Tx) columns(ctx context.Context, table string) ([]string, error) {
	rows, err := tx.tx.QueryContext(tx.ctx(ctx), `SELECT * FROM `+table+` WHERE 1 = 0`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return rows.Columns()
}

func upsertQuery(table string, cols, key []string, versioned bool) string {
	ph := make([]string, len(cols))
	var set []string
	for i, c := range cols {
		ph[i] = fmt.Sprintf("$%d", i+1)
		if !slices.Contains(key, c) {
			set = append(set, c+" = excluded."+c)
		}
	}
	q := `INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `) VALUES (` + strings.Join(ph, ", ") + `) ON CONFLICT (` + strings.Join(key, ", ") + `) `
	if !versioned || len(set) == 0 {
		return q + `DO NOTHING`
	}
	return q + `DO UPDATE SET ` + strings.Join(set, ", ") + ` WHERE ` + newerWins(table)
}

// snapshotArgs turns a row's JSON values into query arguments.
func snapshotArgs(row []any) ([]any, error) {
	out := make([]any, len(row))
	for i, v := range row {
		switch x := v.(type) {
		case nil, string:
			out[i] = x
		case json.Number:
			n, err := x.Int64()
			if err != nil {
				return nil, fmt.Errorf("value %d: %q is not an integer", i, x)
			}
			out[i] = n
		case float64: // decoded without UseNumber
			out[i] = int64(x)
		case int64:
			out[i] = x
		case map[string]any:
			b, err := snapshotBytesValue(x)
			if err != nil {
				return nil, fmt.Errorf("value %d: %w", i, err)
			}
			out[i] = b
		default:
			return nil, fmt.Errorf("value %d: a %T", i, v)
		}
	}
	return out, nil
}

// snapshotBytesValue decodes a bytes value, {"b": base64}, {"x": hex}
// or {"t": text}.
func snapshotBytesValue(o map[string]any) ([]byte, error) {
	if len(o) == 1 {
		if s, ok := o["b"].(string); ok {
			return base64.StdEncoding.DecodeString(s)
		}
		if s, ok := o["x"].(string); ok {
			return hex.DecodeString(s)
		}
		if s, ok := o["t"].(string); ok {
			return []byte(s), nil
		}
	}
	return nil, errors.New(`an object that is not {"b": base64}, {"x": hex} or {"t": text}`)
}

// Empty reports whether the store has nothing replicated yet: no
// repository and no feed of a peer applied. Only such a store joins from
// a snapshot.
func (db *DB) Empty(ctx context.Context) (bool, error) {
	var repos, cursors int64
	if err := db.queryRow(ctx, `SELECT (SELECT COUNT(*) FROM repositories), (SELECT COUNT(*) FROM peer_cursors)`).Scan(&repos, &cursors); err != nil {
		return false, err
	}
	return repos == 0 && cursors == 0, nil
}
