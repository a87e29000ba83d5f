package client

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/piece"
)

// CreatedBy is written into the torrents Create makes.
const CreatedBy = "delugefs"

// ErrData is wrapped by Verify's error when the data does not match the
// torrent.
var ErrData = errors.New("client: data does not match the torrent")

// CreateOptions tune Create. The zero value is a torrent with the piece
// length of piece.Length and no announce URL.
type CreateOptions struct {
	// PieceLength is the piece length, a power of two in
	// [bt.MinPieceLength, bt.MaxPieceLength]; 0 means piece.Length(size).
	PieceLength int64
	// Announce is written as the tracker URL; nothing contacts it.
	Announce string
	// Now stamps the creation date (default time.Now); tests fix it.
	Now func() time.Time
}

// Create hashes the file at path and returns a standalone v1 single-file
// torrent for it, named by the file's base name (unlike DelugeFS blobs,
// whose names derive from their contents). Pieces are hashed in parallel;
// ctx stops the hashing.
func Create(ctx context.Context, path string, opts CreateOptions) (*bt.MetaInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("create torrent: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("create torrent: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("create torrent: %s is not a regular file", path)
	}
	size := fi.Size()
	if size == 0 {
		return nil, fmt.Errorf("create torrent: %s is empty", path)
	}
	pl := opts.PieceLength
	if pl == 0 {
		pl = piece.Length(size)
	}
	if pl < bt.MinPieceLength || pl > bt.MaxPieceLength || pl&(pl-1) != 0 {
		return nil, fmt.Errorf("create torrent: piece length %d is not a power of two in [%d, %d]", pl, bt.MinPieceLength, bt.MaxPieceLength)
	}
	n := piece.NumPieces(size, pl)
	if n > bt.MaxPieces {
		return nil, fmt.Errorf("create torrent: %d pieces of %d bytes, more than %d: use a longer piece length", n, pl, bt.MaxPieces)
	}
	pieces := make([]byte, n*sha1.Size)
	err = hashPieces(ctx, f, size, pl, func(i int, sum [sha1.Size]byte) error {
		copy(pieces[i*sha1.Size:], sum[:])
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create torrent of %s: %w", path, err)
	}
	info, err := newInfo(filepath.Base(path), size, pl, pieces)
	if err != nil {
		return nil, fmt.Errorf("create torrent of %s: %w", path, err)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	return &bt.MetaInfo{
		Info:         info,
		Announce:     opts.Announce,
		CreatedBy:    CreatedBy,
		CreationDate: now().Unix(),
	}, nil
}

// newInfo makes the info dictionary of a standalone torrent, checked by
// bt.ParseInfo so that it obeys the same rules as any torrent we read.
func newInfo(name string, length, pieceLength int64, pieces []byte) (*bt.Info, error) {
	raw := bt.EncodeDict(map[string][]byte{
		"length":       benInt(length),
		"name":         benString(name),
		"piece length": benInt(pieceLength),
		"pieces":       benString(string(pieces)),
	})
	return bt.ParseInfo(raw)
}

func benInt(v int64) []byte {
	b := append([]byte{'i'}, strconv.FormatInt(v, 10)...)
	return append(b, 'e')
}

func benString(s string) []byte {
	b := strconv.AppendInt(nil, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

// Verify checks the file at path against info: its size and the hash of
// every piece. It returns an error wrapping ErrData that names the first
// bad pieces when the data does not match.
func Verify(ctx context.Context, info *bt.Info, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("verify %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("verify %s: %w", path, err)
	}
	if fi.Size() != info.Length {
		return fmt.Errorf("verify %s: %w: %d bytes, the torrent says %d", path, ErrData, fi.Size(), info.Length)
	}
	var mu sync.Mutex // guards bad
	var bad []int
	err = hashPieces(ctx, f, info.Length, info.PieceLength, func(i int, sum [sha1.Size]byte) error {
		if sum != info.PieceHash(i) {
			mu.Lock()
			bad = append(bad, i)
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("verify %s: %w", path, err)
	}
	if len(bad) > 0 {
		first := bad[0]
		for _, i := range bad {
			first = min(first, i)
		}
		return fmt.Errorf("verify %s: %w: %d of %d pieces fail their hash (piece %d first)", path, ErrData, len(bad), info.NumPieces(), first)
	}
	return nil
}

// hashPieces hashes the pieces of f (size bytes, pieces of pl bytes) on
// GOMAXPROCS goroutines and calls got, from any of them, with each piece's
// SHA-1.
func hashPieces(ctx context.Context, f *os.File, size, pl int64, got func(i int, sum [sha1.Size]byte) error) error {
	n := piece.NumPieces(size, pl)
	workers := min(runtime.GOMAXPROCS(0), n)
	next := make(chan int)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { // the feeder; ends when every index is handed out or a worker failed
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range workers {
		g.Go(func() error { // a hasher; ends when next is closed
			buf := make([]byte, pl)
			h := sha1.New()
			for i := range next {
				off := int64(i) * pl
				m := min(pl, size-off)
				if _, err := f.ReadAt(buf[:m], off); err != nil {
					return fmt.Errorf("read piece %d: %w", i, err)
				}
				h.Reset()
				h.Write(buf[:m])
				var sum [sha1.Size]byte
				h.Sum(sum[:0])
				if err := got(i, sum); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}
