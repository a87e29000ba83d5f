package meta

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestJournalModes writes records of random sizes (crossing block
// boundaries, some left for a later barrier as lazy commits leave them)
// through the buffered and the direct journal, and after every barrier
// reads a copy of the file as a restart would: exactly the records synced
// so far come back, in order, whatever the epochs and the partial blocks
// written again.
func TestJournalModes(t *testing.T) {
	for _, name := range []string{"buffered", "direct", "direct-refused"} {
		direct := name != "buffered"
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			j, err := openJournal(dir, 256<<10)
			if err != nil {
				t.Fatal(err)
			}
			defer j.close()
			if direct != (j.df != nil) {
				if direct && runtime.GOOS == "linux" {
					t.Fatalf("the temp dir's file system refuses O_DIRECT")
				}
				if !direct {
					j.df.Close()
					j.df = nil
				}
			}
			if direct && j.df == nil {
				return // not Linux: there is no direct mode to test
			}
			if name == "direct-refused" {
				// A misaligned buffer makes the first direct write fail
				// with EINVAL, as a file system wanting another
				// alignment would: the journal goes on buffered.
				j.scratch = make([]byte, 1<<20+1)[1:]
			}
			rng := rand.New(rand.NewPCG(7, uint64(len(name))))
			var synced, pending []plumbing.Hash
			for i := range 300 {
				var head plumbing.Hash
				head[0], head[1] = byte(i), byte(i>>8)
				obj := journalObj{id: head, file: make([]byte, rng.IntN(9000))}
				rec := j.encodeRecord(head, []journalObj{obj}, nil)
				if !j.fits(len(rec)) {
					// What a checkpoint does once everything is in packs.
					if err := j.newEpoch(); err != nil {
						t.Fatal(err)
					}
					synced, pending = nil, nil
					rec = j.encodeRecord(head, []journalObj{obj}, nil) // of the new epoch
				}
				if _, err := j.write(rec); err != nil {
					t.Fatal(err)
				}
				pending = append(pending, head)
				if rng.IntN(3) == 0 {
					continue // lazy: left for the next barrier
				}
				if err := j.sync(); err != nil {
					t.Fatal(err)
				}
				synced, pending = append(synced, pending...), nil
				if j.df != nil && len(j.tail) >= directBlock {
					t.Fatalf("tail of %d bytes after a barrier", len(j.tail))
				}
				if name == "direct-refused" && j.df != nil {
					t.Fatalf("still direct after a refused write")
				}
				got := reread(t, dir)
				if len(got) != len(synced) {
					t.Fatalf("record %d: %d records after a restart, want %d", i, len(got), len(synced))
				}
				for k := range got {
					if got[k].head != synced[k] {
						t.Fatalf("record %d: restart's record %d is %s, want %s", i, k, got[k].head, synced[k])
					}
				}
			}
		})
	}
}

// reread opens a copy of the journal under dir as the next start would
// and returns its records.
func reread(t *testing.T, dir string) []journalRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	cp := t.TempDir()
	if err := os.WriteFile(filepath.Join(cp, journalName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	j, err := openJournal(cp, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	recs, err := j.records()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
