package fs

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"time"
)

// Staging layout. An upload session's objects have the content keys
// uploads/<id>/<name> (data, and sealed for a digest other than sha256);
// on a filesystem each is one file, uploads/<id>.<name>, with no
// directory per session: making and removing a directory for every blob
// pushed cost a mkdir and an rmdir on the one uploads directory each, about
// a twentieth of the node's CPU in 100 concurrent small pushes
// (docs/performance.md). Sessions an earlier version staged in
// uploads/<id>/<name> are still read, resumed and deleted where they are.

const stagingDir = "uploads"

// stagingName splits a staging key uploads/<id>/<name> whose name has no
// dot (so that the file uploads/<id>.<name> maps back to it: ids may hold
// dots, names do not).
func stagingName(key string) (id, name string, ok bool) {
	rest, ok := strings.CutPrefix(key, stagingDir+"/")
	if !ok {
		return "", "", false
	}
	id, name, ok = strings.Cut(rest, "/")
	if !ok || id == "" || name == "" || strings.ContainsAny(name, "/.") {
		return "", "", false
	}
	return id, name, true
}

// stagingKey maps a file directly under the uploads directory back to its
// key: uploads/<id>.<name> is uploads/<id>/<name>.
func stagingKey(file string) (string, bool) {
	i := strings.LastIndexByte(file, '.')
	if i <= 0 || i == len(file)-1 {
		return "", false
	}
	return stagingDir + "/" + file[:i] + "/" + file[i+1:], true
}

// stagingFile is the file of session id's object name.
func (b *Backend) stagingFile(id, name string) string {
	return filepath.Join(b.root, stagingDir, id+"."+name)
}

// legacyPath is where an earlier version staged key: its session's own
// directory.
func (b *Backend) legacyPath(key string) string {
	return filepath.Join(b.root, filepath.FromSlash(key))
}

// existing returns the file of key to read, resume or delete: its
// staging file, or, when there is none, the one an earlier version left
// in its session's directory.
func (b *Backend) existing(key string) (string, error) {
	p, err := b.path(key)
	if err != nil {
		return "", err
	}
	if _, _, ok := stagingName(key); !ok {
		return p, nil
	}
	if _, err := b.fsys.Stat(p); errors.Is(err, fs.ErrNotExist) {
		if legacy := b.legacyPath(key); legacy != p {
			if _, err := b.fsys.Stat(legacy); err == nil {
				return legacy, nil
			}
		}
	}
	return p, nil
}

// inLegacySession reports whether p is a file in a session directory of
// an earlier version (uploads/<id>/...), which goes once empty.
func (b *Backend) inLegacySession(p string) bool {
	uploads := filepath.Join(b.root, stagingDir)
	return strings.HasPrefix(p, uploads+string(filepath.Separator)) && filepath.Dir(p) != uploads
}

// deleteSession removes every object of session id: its staging files and
// a directory an earlier version made for it.
func (b *Backend) deleteSession(id string) error {
	for _, name := range []string{"data", "sealed"} {
		if err := b.fsys.Remove(b.stagingFile(id, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	// Only a directory: uploads/<id> may also be another session's file
	// (id x.data is session x's data file).
	legacy := filepath.Join(b.root, stagingDir, id)
	if fi, err := b.fsys.Stat(legacy); err != nil || !fi.IsDir() {
		return nil
	}
	return b.fsys.RemoveAll(legacy)
}

// underPrefix calls fn only for keys under prefix.
func underPrefix(prefix string, fn func(key string, size int64, modified time.Time) error) func(string, int64, time.Time) error {
	return func(key string, size int64, modified time.Time) error {
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		return fn(key, size, modified)
	}
}
