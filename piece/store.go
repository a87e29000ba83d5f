package piece

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/delugefs/delugefs/bt"
)

// ErrNotFound is returned (wrapped) when a store holds no complete blob with
// the info-hash asked for.
var ErrNotFound = errors.New("piece: blob not found")

// Names inside a store root and inside blobs/ab/.
const (
	blobsDir   = "blobs"
	tmpDir     = "tmp"
	haveSuffix = ".have"
	// tmpMarker is part of every temporary file the store makes inside
	// blobs/ (the .have file being replaced). OpenStore removes them.
	tmpMarker = ".tmp-"
)

// Store keeps the blobs of one disk under a root directory:
//
//	ROOT/blobs/ab/<infohash>        complete or partial blob data (sparse)
//	ROOT/blobs/ab/<infohash>.have   have-bitfield of a partial blob
//	ROOT/tmp/                       files open for writing
//
// where ab is the first two hex digits of the info-hash. A blob is complete
// when its data file exists and no .have file is beside it; complete blobs
// are read-only (mode 0444) and never change. The store writes the .have file
// before it creates a partial blob's data file and removes it only after the
// data is durable, so a crash at any point never makes a partial blob look
// complete.
//
// Durability: Seal fsyncs a blob's data and directory before it returns,
// so a blob it returns is durable by itself. SealSmall does neither, for
// blobs of at most MaxSmallBlob bytes whose bytes the caller makes durable
// elsewhere: the namespace journal carries them with the commit that
// references the blob (meta.Tx.AttachBlob), which turns close(2) of a small
// file into one barrier, and after a crash meta's replay hands them to
// Restore, which rewrites the blob (verified against its info) before the
// commit counts; meta's checkpoint syncfs's the disk, which makes the blob
// files durable before the journal records go. A small blob stored that way
// may be torn by a crash before any record carried it: Seal and SealSmall
// compare a stored small copy before they rely on it, and replace it when
// it differs.
//
// A Store is safe for concurrent use. One Store (one process) owns a root:
// OpenStore removes whatever is in ROOT/tmp.
type Store struct {
	root  string
	blobs string
	tmp   string

	// mu guards open and orders the namespace changes of blobs/ (rename
	// into place, completion, removal) against each other. It is never held
	// while data is hashed or copied.
	mu   sync.Mutex
	open map[bt.InfoHash]*Blob // partial or complete blobs opened by OpenBlob

	// shards holds the blobs/ab directories known to exist (PutSmall).
	shards sync.Map
	async  asyncWriter   // PutSmallAsync
	seq    atomic.Uint64 // names PutSmall's temp files
}

// OpenStore opens the store under root, creating root, root/blobs and
// root/tmp as needed. It removes everything in root/tmp (files that were open
// for writing when the last process died), the store's own temporary files in
// root/blobs, and .have files whose data file is missing.
func OpenStore(root string) (*Store, error) {
	s := &Store{
		root:  root,
		blobs: filepath.Join(root, blobsDir),
		tmp:   filepath.Join(root, tmpDir),
		open:  make(map[bt.InfoHash]*Blob),
	}
	for _, d := range []string{s.blobs, s.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open store %s: %w", root, err)
		}
	}
	if err := s.cleanTmp(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", root, err)
	}
	if err := s.cleanBlobs(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", root, err)
	}
	return s, nil
}

// Root returns the directory the store was opened on.
func (s *Store) Root() string { return s.root }

// cleanTmp removes every entry of tmp/.
func (s *Store) cleanTmp() error {
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		return fmt.Errorf("clean tmp: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(s.tmp, e.Name())); err != nil {
			return fmt.Errorf("clean tmp: %w", err)
		}
	}
	return nil
}

// cleanBlobs removes the store's temporary files and orphaned .have files
// from blobs/ab/ directories.
func (s *Store) cleanBlobs() error {
	subs, err := os.ReadDir(s.blobs)
	if err != nil {
		return fmt.Errorf("clean blobs: %w", err)
	}
	for _, sub := range subs {
		if !sub.IsDir() || !isShard(sub.Name()) {
			continue
		}
		dir := filepath.Join(s.blobs, sub.Name())
		ents, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("clean blobs: %w", err)
		}
		names := make(map[string]bool, len(ents))
		for _, e := range ents {
			names[e.Name()] = true
		}
		for _, e := range ents {
			name := e.Name()
			stray := strings.Contains(name, tmpMarker)
			if base, ok := strings.CutSuffix(name, haveSuffix); ok && !names[base] {
				stray = true // the data file never got created, or was removed first
			}
			if stray {
				if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("clean blobs: %w", err)
				}
			}
		}
	}
	return nil
}

// isShard reports whether name is a two-hex-digit shard directory name.
func isShard(name string) bool {
	return len(name) == 2 && isHex(name)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// dataPath returns ROOT/blobs/ab/<hash>.
func (s *Store) dataPath(h bt.InfoHash) string {
	hx := h.String()
	return filepath.Join(s.blobs, hx[:2], hx)
}

// havePath returns ROOT/blobs/ab/<hash>.have.
func (s *Store) havePath(h bt.InfoHash) string {
	return s.dataPath(h) + haveSuffix
}

// TempFile creates a new empty file under ROOT/tmp for a file open for
// writing. Seal turns it into a blob; the caller removes it otherwise.
func (s *Store) TempFile() (*os.File, error) {
	f, err := os.CreateTemp(s.tmp, "w-*")
	if err != nil {
		return nil, fmt.Errorf("create temp file: %w", err)
	}
	return f, nil
}

// Seal makes the file at path (normally from TempFile, no longer written to)
// a complete blob and returns its info dictionary. Seal hashes the file
// with piece length Length(size), unless known is the file's info (the
// caller hashed the file while it was written sequentially, with a Hasher of
// piece length Length(size)): a known info whose length or piece length does
// not fit the file is ignored and the file hashed, so that the same contents
// always get the same info-hash. Seal does not re-check the piece hashes of a
// known info. An empty file is no blob: Seal removes it and returns a nil
// Info and a nil error.
//
// Seal fsyncs the data, makes it read-only and renames it into blobs/; when
// that blob is already complete it removes the file instead, so identical
// contents are stored once. A partial download of the same blob is replaced
// by the sealed copy. On error (a full disk, say) nothing has changed in
// blobs/, and the file at path is left to the caller. SealSmall is the
// variant without fsyncs for small blobs whose durability the caller
// provides.
func (s *Store) Seal(path string, known *bt.Info) (*bt.Info, error) {
	info, err := s.seal(path, known)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", path, err)
	}
	return info, nil
}

func (s *Store) seal(path string, known *bt.Info) (*bt.Info, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if size == 0 {
		f.Close()
		f = nil
		if err := os.Remove(path); err != nil {
			return nil, err
		}
		return nil, nil
	}
	sameDev := sameDevice(fi, s.tmp)
	info := known
	if info != nil && (checkInfo(info) != nil || info.Length != size || info.PieceLength != Length(size)) {
		// Not this file's canonical info (the writer guessed the piece
		// length before it knew the size, or lost track of the bytes):
		// hash the file, so the same contents get the same info-hash.
		info = nil
	}
	synced := false
	if info == nil {
		// Flush the data to disk while hashing it: the two overlap, and a
		// duplicate (rare) only wastes the early write-back.
		syncErr := make(chan error, 1)
		if sameDev {
			go func() { syncErr <- f.Sync() }() // joined just below
		} else {
			syncErr <- nil
		}
		info, err = hashFile(f, size)
		serr := <-syncErr
		if err != nil {
			return nil, err
		}
		if serr != nil {
			return nil, fmt.Errorf("sync: %w", serr)
		}
		synced = sameDev
	}
	h := info.Hash()
	replace := false
	if s.Has(h) {
		// Stored already: drop the copy, once the stored one is known
		// good and durable (SealSmall stores without fsync).
		good, err := s.confirmStored(h, f, size)
		if err != nil {
			return nil, err
		}
		if good {
			f.Close()
			f = nil
			if err := os.Remove(path); err != nil {
				return nil, err
			}
			return info, nil
		}
		replace = true // a torn copy: this file replaces it
	}

	// A file on another file system (not from TempFile) cannot be renamed
	// into blobs/: copy it into tmp/ first.
	src := path
	if !sameDev {
		cp, err := s.copyIn(f, size)
		if err != nil {
			return nil, err
		}
		f.Close()
		f = cp
		src = cp.Name()
		defer os.Remove(src) // fails harmlessly once renamed
	}

	if !synced {
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("sync: %w", err)
		}
	}
	if err := f.Chmod(0o444); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	f = nil

	dst := s.dataPath(h)
	dir := filepath.Dir(dst)
	if err := mkdirSynced(dir); err != nil {
		os.Chmod(src, 0o600)
		return nil, err
	}

	s.mu.Lock()
	var dup bool
	if replace {
		err = s.replaceLocked(h, src, dst)
	} else {
		dup, err = s.installLocked(h, src, dst)
	}
	s.mu.Unlock()
	if err != nil {
		os.Chmod(src, 0o600)
		return nil, err
	}
	if dup {
		if err := os.Remove(src); err != nil {
			return nil, err
		}
	} else if err := syncDir(dir); err != nil {
		return nil, err
	}
	if src != path {
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	return info, nil
}

// installLocked renames the sealed file src to dst unless the blob h is
// complete already (dup). A partial blob of h is replaced: its .have file is
// removed after the rename and an open Blob switches to the new file.
// s.mu must be held.
func (s *Store) installLocked(h bt.InfoHash, src, dst string) (dup bool, err error) {
	if s.hasLocked(h) {
		return true, nil
	}
	if err := os.Rename(src, dst); err != nil {
		return false, err
	}
	if b := s.open[h]; b != nil {
		if err := b.adopt(dst); err != nil {
			return false, err
		}
	}
	// After the rename the data file is complete: a crash before this
	// removal leaves a partial blob whose every piece verifies.
	if err := os.Remove(s.havePath(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return false, nil
}

// copyIn copies size bytes of f into a new file under tmp/, after checking
// there is room for it.
func (s *Store) copyIn(f *os.File, size int64) (*os.File, error) {
	if err := s.checkSpace(size); err != nil {
		return nil, err
	}
	cp, err := os.CreateTemp(s.tmp, "seal-*")
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(cp, io.NewSectionReader(f, 0, size)); err != nil {
		cp.Close()
		os.Remove(cp.Name())
		return nil, fmt.Errorf("copy into store: %w", err)
	}
	return cp, nil
}

// checkSpace returns an error wrapping ENOSPC when the disk has fewer than
// need bytes free. It passes when the free space cannot be measured.
func (s *Store) checkSpace(need int64) error {
	_, free, err := s.Space()
	if err != nil || need <= 0 || uint64(need) <= free {
		return nil
	}
	return fmt.Errorf("need %d bytes, %d free: %w", need, free, syscall.ENOSPC)
}

// hashFile hashes size bytes of f into an info dictionary with the piece
// length Length(size).
func hashFile(f *os.File, size int64) (*bt.Info, error) {
	hs := NewHasher(Length(size))
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(hs, io.NewSectionReader(f, 0, size), buf); err != nil {
		return nil, fmt.Errorf("hash: %w", err)
	}
	if hs.Len() != size {
		return nil, fmt.Errorf("hash: read %d of %d bytes", hs.Len(), size)
	}
	return hs.Info(), nil
}

// checkInfo checks the geometry of an info dictionary the store is asked to
// hold, so that piece arithmetic on it cannot go wrong.
func checkInfo(info *bt.Info) error {
	switch {
	case info == nil:
		return errors.New("piece: nil info")
	case info.Length <= 0:
		return fmt.Errorf("piece: info length %d is not positive", info.Length)
	case info.PieceLength <= 0:
		return fmt.Errorf("piece: info piece length %d is not positive", info.PieceLength)
	case len(info.Pieces)%20 != 0:
		return fmt.Errorf("piece: info pieces string of %d bytes is not a multiple of 20", len(info.Pieces))
	}
	if want := (info.Length + info.PieceLength - 1) / info.PieceLength; int64(len(info.Pieces)/20) != want {
		return fmt.Errorf("piece: info has %d piece hashes, its length needs %d", len(info.Pieces)/20, want)
	}
	return nil
}

// mkdirSynced creates dir (a blobs/ab shard) if missing and makes the new
// entry durable in its parent.
func mkdirSynced(dir string) error {
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// Open returns the complete blob h opened read-only, for ReadAt (pread). It
// returns an error wrapping ErrNotFound when the store has no complete copy.
// The caller closes the file. Open takes no lock.
func (s *Store) Open(h bt.InfoHash) (*os.File, error) {
	s.waitPending(h)
	data := s.dataPath(h)
	for {
		f, err := os.Open(data)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open blob %s: %w", h, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("open blob %s: %w", h, err)
		}
		// A .have file appears before its data file and goes only once
		// the data is complete, so no .have after the open means the
		// file opened is complete, unless Seal replaced a partial file
		// in between: then the path names another file, and we retry.
		if _, err := os.Lstat(s.havePath(h)); err == nil {
			f.Close()
			return nil, fmt.Errorf("open blob %s: partial: %w", h, ErrNotFound)
		}
		fi, err1 := f.Stat()
		now, err2 := os.Stat(data)
		if err := errors.Join(err1, err2); err != nil {
			f.Close()
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("open blob %s: %w", h, ErrNotFound)
			}
			return nil, fmt.Errorf("open blob %s: %w", h, err)
		}
		if os.SameFile(fi, now) {
			return f, nil
		}
		f.Close()
	}
}

// Has reports whether the store holds a complete copy of blob h. It takes
// no lock.
func (s *Store) Has(h bt.InfoHash) bool {
	return s.isPending(h) || s.hasLocked(h)
}

// hasLocked reports whether blob h is complete; under s.mu the answer
// cannot change before the lock is released.
func (s *Store) hasLocked(h bt.InfoHash) bool {
	if _, err := os.Lstat(s.dataPath(h)); err != nil {
		return false
	}
	_, err := os.Lstat(s.havePath(h))
	return errors.Is(err, fs.ErrNotExist)
}

// Remove deletes blob h, complete or partial. Removing a blob the store does
// not hold is not an error. Files already open on the blob keep reading it
// (on Unix); a Blob open on a partial copy stops persisting its bitfield.
func (s *Store) Remove(h bt.InfoHash) error {
	s.waitPending(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.open[h]; b != nil {
		// Its holders keep their files; the next OpenBlob starts afresh.
		b.markRemoved()
		delete(s.open, h)
	}
	// Data first: a crash between the two removals leaves an orphaned .have
	// file (cleaned by OpenStore), never a partial file that looks complete.
	data := s.dataPath(h)
	if err := os.Remove(data); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove blob %s: %w", h, err)
	}
	if err := os.Remove(s.havePath(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove blob %s: %w", h, err)
	}
	if err := syncDir(filepath.Dir(data)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove blob %s: %w", h, err)
	}
	return nil
}

// Complete returns the info-hashes of every complete blob, sorted.
func (s *Store) Complete() ([]bt.InfoHash, error) {
	if err := s.Flush(); err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	subs, err := os.ReadDir(s.blobs)
	if err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	var out []bt.InfoHash
	for _, sub := range subs {
		if !sub.IsDir() || !isShard(sub.Name()) {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(s.blobs, sub.Name()))
		if err != nil {
			return nil, fmt.Errorf("list blobs: %w", err)
		}
		partial := make(map[string]bool)
		for _, e := range ents {
			if base, ok := strings.CutSuffix(e.Name(), haveSuffix); ok {
				partial[base] = true
			}
		}
		for _, e := range ents {
			name := e.Name()
			if len(name) != 40 || !e.Type().IsRegular() || partial[name] || name[:2] != sub.Name() {
				continue
			}
			h, err := bt.ParseInfoHash(name)
			if err != nil {
				continue // not ours (upper-case hex, say)
			}
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b bt.InfoHash) int { return strings.Compare(string(a[:]), string(b[:])) })
	return out, nil
}

// Space returns the size of the store's disk and the bytes available on it to
// an unprivileged user.
func (s *Store) Space() (total, free uint64, err error) {
	total, free, err = diskSpace(s.root)
	if err != nil {
		return 0, 0, fmt.Errorf("disk space of %s: %w", s.root, err)
	}
	return total, free, nil
}
