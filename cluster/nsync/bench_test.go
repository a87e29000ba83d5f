package nsync

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/meta/metatest"
)

// benchPeer is a peer holding files entries in 100 directories.
func benchPeer(b *testing.B, files int) *peer {
	p := newPeer(b, "")
	p.repo.Do(b, "fill", func(tx *meta.Tx) error {
		for d := range 100 {
			if err := tx.Put(fmt.Sprintf("d%02d", d), metatest.Dir(0o755, 1)); err != nil {
				return err
			}
		}
		for i := range files {
			if err := tx.Put(fmt.Sprintf("d%02d/f%06d", i%100, i), metatest.File(int64(1000+i), uint64(i+1), 0o644, 1)); err != nil {
				return err
			}
		}
		return nil
	})
	if err := p.repo.Sync(testCtx(b, 30*time.Second)); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkFetch measures a fetch from a peer of 10,000 files: skipped
// (we hold its head: one GET) and incremental (one file changed since our
// clone: GET, POST, checks, decode).
func BenchmarkFetch(b *testing.B) {
	p := benchPeer(b, 10_000)
	local := filepath.Join(b.TempDir(), "meta.git")
	if err := Clone(testCtx(b, 60*time.Second), p.client, local); err != nil {
		b.Fatal(err)
	}
	b.Run("skipped", func(b *testing.B) {
		for b.Loop() {
			f, err := Fetch(testCtx(b, 10*time.Second), p.client, local, Options{})
			if err != nil || !f.Skipped {
				b.Fatal(err, f.Skipped)
			}
		}
	})
	p.write(b, 99, "d07/new")
	b.Run("one-file", func(b *testing.B) {
		for b.Loop() {
			f, err := Fetch(testCtx(b, 10*time.Second), p.client, local, Options{})
			if err != nil || f.Skipped {
				b.Fatal(err)
			}
			b.ReportMetric(float64(f.Objects), "objects")
			b.ReportMetric(float64(f.Bytes), "wire-B")
			f.Close()
		}
	})
}

// BenchmarkClone measures Clone of a namespace of 10,000 files.
func BenchmarkClone(b *testing.B) {
	p := benchPeer(b, 10_000)
	for b.Loop() {
		dir := filepath.Join(b.TempDir(), "meta.git")
		if err := Clone(testCtx(b, 60*time.Second), p.client, dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFetchKnown measures the fetch a Syncer makes every Interval
// per peer in sync: the peer's head is our head (Options.Known), so
// nothing of our repository is read.
func BenchmarkFetchKnown(b *testing.B) {
	p := benchPeer(b, 1000)
	local := filepath.Join(b.TempDir(), "meta.git")
	known := []plumbing.Hash{p.repo.Head()}
	for b.Loop() {
		f, err := Fetch(testCtx(b, 10*time.Second), p.client, local, Options{Known: known})
		if err != nil || !f.Skipped {
			b.Fatal(err)
		}
		b.ReportMetric(float64(f.Bytes), "wire-B")
	}
}
