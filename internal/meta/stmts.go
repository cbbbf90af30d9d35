package meta

import (
	"context"
	"database/sql"
	"strings"
	"sync"
)

// Prepared statements. SQLite (modernc.org/sqlite) parses a statement's
// text every time it runs one given as text: a CPU profile of a region
// joining (every record applied in its own transaction) spent a fifth of
// its CPU in SQLite's parser. So on SQLite the store prepares each
// statement once per pool and runs it prepared: database/sql keeps it
// prepared on each connection it was used on, and a transaction runs it on
// its own connection (Tx.StmtContext). PostgreSQL's driver (pgx) already
// caches prepared statements per connection; its queries run as text.

// maxStatements bounds the statements kept prepared (statement texts
// built with values in them would otherwise grow it without end).
const maxStatements = 512

// statements are one pool's prepared statements, by text.
type statements struct {
	mu     sync.Mutex
	m      map[string]*sql.Stmt
	wanted map[string]struct{} // seen in a transaction, to prepare after it
}

// get returns q prepared on pool, or nil: the caller then runs it as text
// (which reports any error). With prepare unset (inside a transaction on
// SQLite's one writing connection, which preparing on the pool would wait
// for) q is only noted, to be prepared by prepareWanted after the
// transaction. No lock is held while a statement is prepared.
func (s *statements) get(ctx context.Context, pool *sql.DB, q string, prepare bool) *sql.Stmt {
	if strings.Contains(q, ";") {
		return nil // several statements: a prepared statement would run the first alone
	}
	s.mu.Lock()
	st, ok := s.m[q]
	full := len(s.m) >= maxStatements
	if !ok && !prepare && !full {
		if s.wanted == nil {
			s.wanted = map[string]struct{}{}
		}
		s.wanted[q] = struct{}{}
	}
	s.mu.Unlock()
	if ok || !prepare || full {
		return st
	}
	st, err := pool.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if had, ok := s.m[q]; ok || len(s.m) >= maxStatements {
		st.Close()
		return had
	}
	if s.m == nil {
		s.m = map[string]*sql.Stmt{}
	}
	s.m[q] = st
	return st
}

// prepareWanted prepares the statements transactions noted.
func (s *statements) prepareWanted(ctx context.Context, pool *sql.DB) {
	s.mu.Lock()
	wanted := s.wanted
	s.wanted = nil
	s.mu.Unlock()
	for q := range wanted {
		s.get(ctx, pool, q, true)
	}
}

func (s *statements) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.m {
		st.Close()
	}
	s.m = nil
}

// exec runs q in the transaction.
func (tx *Tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	ctx = tx.ctx(ctx)
	if st := tx.prepared(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.tx.ExecContext(ctx, q, args...)
}

// queryRow runs q in the transaction for one row.
func (tx *Tx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	ctx = tx.ctx(ctx)
	if st := tx.prepared(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.tx.QueryRowContext(ctx, q, args...)
}

// query runs q in the transaction.
func (tx *Tx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	ctx = tx.ctx(ctx)
	if st := tx.prepared(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return tx.tx.QueryContext(ctx, q, args...)
}

// ctx is the context a statement of the transaction runs under: the
// transaction's bound when it has one, else the write's own.
func (tx *Tx) ctx(ctx context.Context) context.Context {
	if tx.bound != nil {
		return tx.bound
	}
	return ctx
}

// prepared returns q prepared for the transaction (SQLite), or nil.
func (tx *Tx) prepared(ctx context.Context, q string) *sql.Stmt {
	if tx.db == nil || tx.dialect != sqlite {
		return nil
	}
	st := tx.db.writeStmts.get(ctx, tx.db.w, q, false)
	if st == nil {
		return nil
	}
	return tx.tx.StmtContext(ctx, st)
}

// query runs q on the read pool.
func (db *DB) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if db.dialect == sqlite {
		if st := db.readStmts.get(ctx, db.r, q, true); st != nil {
			return st.QueryContext(ctx, args...)
		}
	}
	return db.r.QueryContext(ctx, q, args...)
}

// queryRow runs q on the read pool for one row.
func (db *DB) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if db.dialect == sqlite {
		if st := db.readStmts.get(ctx, db.r, q, true); st != nil {
			return st.QueryRowContext(ctx, args...)
		}
	}
	return db.r.QueryRowContext(ctx, q, args...)
}
