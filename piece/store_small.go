package piece

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/delugefs/delugefs/bt"
)

// MaxSmallBlob is the largest blob SealSmall seals without an fsync: the
// size of one piece, and of meta.MaxAttachedBlob.
const MaxSmallBlob = MinLength

// ErrCorrupt is returned (wrapped) when bytes do not match the info
// dictionary they are given with.
var ErrCorrupt = errors.New("piece: data does not match its info")

// SealSmall is Seal for a small file whose durability the caller provides
// by other means: the namespace journal carries its bytes
// (meta.Tx.AttachBlob) and gives them back to Restore after a crash. It
// reads the file (at most MaxSmallBlob bytes), hashes it unless known is
// its canonical info, and renames it into blobs/ without any fsync of the
// data or of a directory (a new blobs/ab shard directory is still made
// durable once). It returns the info and the bytes it read, which the
// caller must not change.
//
// A blob already stored whose bytes differ from the file's (a copy sealed
// by SealSmall that a crash tore before anything referenced it) is
// replaced. A file larger than MaxSmallBlob is sealed by Seal, with its
// fsyncs, and comes back with nil data. An empty file is no blob: it is
// removed, and the info and data are nil. On error nothing has changed in
// blobs/ and the file at path is left to the caller.
//
// Until the caller's journal record is durable the blob may be lost or
// torn by a crash; a durable Seal that finds it stored compares and fsyncs
// it before it relies on it.
func (s *Store) SealSmall(path string, known *bt.Info) (*bt.Info, []byte, error) {
	info, data, err := s.sealSmall(path, known)
	if err != nil {
		return nil, nil, fmt.Errorf("seal %s: %w", path, err)
	}
	return info, data, nil
}

func (s *Store) sealSmall(path string, known *bt.Info) (*bt.Info, []byte, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := fi.Size()
	if size > MaxSmallBlob || !sameDevice(fi, s.tmp) {
		f.Close()
		f = nil
		info, err := s.seal(path, known)
		return info, nil, err
	}
	if size == 0 {
		f.Close()
		f = nil
		return nil, nil, os.Remove(path)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, size), data); err != nil {
		return nil, nil, fmt.Errorf("read: %w", err)
	}
	info := known
	if info == nil || checkInfo(info) != nil || info.Length != size || info.PieceLength != Length(size) {
		info = hashBytes(data, Length(size))
	}
	h := info.Hash()
	if s.holds(h, data) {
		f.Close()
		f = nil
		return info, data, os.Remove(path)
	}
	if err := f.Chmod(0o444); err != nil {
		return nil, nil, err
	}
	if err := f.Close(); err != nil {
		return nil, nil, err
	}
	f = nil
	dst := s.dataPath(h)
	if err := mkdirSynced(filepath.Dir(dst)); err != nil {
		os.Chmod(path, 0o600)
		return nil, nil, err
	}
	s.mu.Lock()
	err = s.replaceLocked(h, path, dst)
	s.mu.Unlock()
	if err != nil {
		os.Chmod(path, 0o600)
		return nil, nil, err
	}
	return info, data, nil
}

// Restore writes the complete blob info from data, after checking that
// data is info's contents (its length and every piece hash; ErrCorrupt
// otherwise). A stored copy with these bytes is left alone; any other file
// (missing, torn, partial) is replaced. Restore is idempotent. It does not
// fsync: meta replays attached blobs (meta.Options.RestoreBlob) and then
// syncfs's the file system, which makes them durable.
func (s *Store) Restore(info *bt.Info, data []byte) error {
	if err := s.restore(info, data); err != nil {
		return fmt.Errorf("restore blob: %w", err)
	}
	return nil
}

func (s *Store) restore(info *bt.Info, data []byte) error {
	if err := checkInfo(info); err != nil {
		return err
	}
	if int64(len(data)) != info.Length {
		return fmt.Errorf("%w: %d bytes for a blob of %d", ErrCorrupt, len(data), info.Length)
	}
	for i := range info.NumPieces() {
		lo := int64(i) * info.PieceLength
		hi := min(lo+info.PieceLength, info.Length)
		if sha1.Sum(data[lo:hi]) != info.PieceHash(i) {
			return fmt.Errorf("%w: piece %d", ErrCorrupt, i)
		}
	}
	h := info.Hash()
	if s.holds(h, data) {
		return nil
	}
	tmp, err := os.CreateTemp(s.tmp, "restore-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o444)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.MkdirAll(filepath.Dir(s.dataPath(h)), 0o755)
	}
	if err == nil {
		s.mu.Lock()
		err = s.replaceLocked(h, tmp.Name(), s.dataPath(h))
		s.mu.Unlock()
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// holds reports whether blob h is stored complete with exactly data as
// its contents.
func (s *Store) holds(h bt.InfoHash, data []byte) bool {
	if !s.hasLocked(h) {
		return false
	}
	got, err := os.ReadFile(s.dataPath(h))
	return err == nil && bytes.Equal(got, data)
}

// replaceLocked renames the complete file src over blob h's data file dst,
// whatever is there, and makes the blob complete (the .have file of a
// partial copy goes; an open Blob switches to the new file). s.mu held.
func (s *Store) replaceLocked(h bt.InfoHash, src, dst string) error {
	if err := os.Rename(src, dst); err != nil {
		return err
	}
	if b := s.open[h]; b != nil {
		if err := b.adopt(dst); err != nil {
			return err
		}
	}
	if err := os.Remove(s.havePath(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// hashBytes returns the info dictionary of data with the given piece
// length.
func hashBytes(data []byte, pieceLength int64) *bt.Info {
	hs := NewHasher(pieceLength)
	hs.Write(data)
	return hs.Info()
}

// confirmStored makes a stored copy of blob h that a durable Seal is about
// to rely on instead of the file at path (size bytes) durable: a small
// blob may have been sealed by SealSmall (no fsync) and torn by a crash
// before any record carried it, so its bytes are compared with the file's
// first and replaced when they differ. It reports whether the stored copy
// is good (false: install the file as usual).
func (s *Store) confirmStored(h bt.InfoHash, f *os.File, size int64) (bool, error) {
	dst := s.dataPath(h)
	if size <= MaxSmallBlob {
		want := make([]byte, size)
		if _, err := io.ReadFull(io.NewSectionReader(f, 0, size), want); err != nil {
			return false, fmt.Errorf("read: %w", err)
		}
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, want) {
			return false, nil
		}
	}
	b, err := os.Open(dst)
	if err != nil {
		return false, nil
	}
	err = b.Sync()
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("sync: %w", err)
	}
	return true, syncDir(filepath.Dir(dst))
}

// PutSmall stores data (at most MaxSmallBlob bytes, not empty) as a
// complete blob, like SealSmall but from memory: the caller held a small
// file's contents in memory while it was written, so there is no temp file
// to read back. It hashes data, writes the blob under a temp name beside
// its final one and renames it into place, without fsync (the caller's
// journal carries data, see SealSmall); a blob already stored with these
// bytes is kept. It returns the info. The caller must not change data.
func (s *Store) PutSmall(data []byte) (*bt.Info, error) {
	if len(data) == 0 || len(data) > MaxSmallBlob {
		return nil, fmt.Errorf("put small blob: %d bytes: want 1 to %d", len(data), MaxSmallBlob)
	}
	info := hashBytes(data, Length(int64(len(data))))
	h := info.Hash()
	if s.holds(h, data) {
		return info, nil
	}
	dst := s.dataPath(h)
	dir := filepath.Dir(dst)
	if _, ok := s.shards.Load(dir); !ok {
		if err := mkdirSynced(dir); err != nil {
			return nil, fmt.Errorf("put small blob %s: %w", h, err)
		}
		s.shards.Store(dir, true)
	}
	tmp := filepath.Join(s.tmp, fmt.Sprintf("p-%d", s.seq.Add(1)))
	if err := writeNew(tmp, data); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("put small blob %s: %w", h, err)
	}
	s.mu.Lock()
	err := s.replaceLocked(h, tmp, dst)
	s.mu.Unlock()
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("put small blob %s: %w", h, err)
	}
	return info, nil
}
