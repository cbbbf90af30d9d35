package meta

import (
	"bytes"
	"database/sql/driver"
	"unicode/utf8"

	msqlite "modernc.org/sqlite"
)

// sqliteTextBytes is the SQL function a SQLite store's snapshot asks
// whether bytes travel as JSON text ({"t": text}): 1 when they are valid
// UTF-8 without a NUL (JSON carries such text exactly, and SQLite's text
// functions stop at a NUL), else 0 (sent as {"x": hex}). Most bytes a
// snapshot carries are manifests, JSON themselves: as text they are half
// the size of their hex, and SQLite spends less producing them.
const sqliteTextBytes = "georeg_text_bytes"

func init() {
	msqlite.MustRegisterFunction(sqliteTextBytes, &msqlite.FunctionImpl{
		NArgs:         1,
		Deterministic: true,
		VolatileArgs:  true, // read here, not kept
		Scalar: func(_ *msqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			b, ok := args[0].([]byte)
			if ok && utf8.Valid(b) && bytes.IndexByte(b, 0) < 0 {
				return int64(1), nil
			}
			return int64(0), nil
		},
	})
}
