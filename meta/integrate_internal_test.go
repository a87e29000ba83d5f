package meta

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/delugefs/delugefs/bt"
)

// checkDesc verifies every directory's count of descendants.
func checkDesc(t *testing.T, n *node, path string) uint32 {
	t.Helper()
	var sum uint32
	it := n.kids.Iterator()
	for !it.Done() {
		name, c, _ := it.Next()
		if c.e.Kind == KindDir {
			checkDesc(t, c, join(path, name))
		}
		sum += c.weight()
	}
	if sum != n.desc {
		t.Fatalf("%q: desc %d, children weigh %d", path, n.desc, sum)
	}
	return sum
}

// TestDescCounts runs random updates and checks that the descendant
// counts the snapshot keeps (Integrate's entry count) agree with the
// tree and with Len.
func TestDescCounts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	r, stop := openServed(t, dir, Options{})
	rnd := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "b", "c"}
	for i := range 300 {
		r.Update(context.Background(), "op", func(tx *Tx) error {
			dirs := txDirs(tx)
			p := join(dirs[rnd.IntN(len(dirs))], names[rnd.IntN(len(names))])
			q := join(dirs[rnd.IntN(len(dirs))], names[rnd.IntN(len(names))])
			switch rnd.IntN(5) {
			case 0:
				return tx.Put(p, &Entry{Kind: KindDir, Mode: 0o755, Mtime: int64(i)})
			case 1:
				return tx.Put(p, &Entry{Kind: KindFile, Mode: 0o644, Info: bt.NewInfo(1, 1<<18, make([]byte, 20))})
			case 2:
				return tx.Remove(p)
			case 3:
				return tx.Rename(p, q)
			default:
				return tx.Put("", &Entry{Kind: KindDir, Mode: 0o700, Mtime: int64(i)})
			}
		})
		s := r.Snapshot()
		if got := checkDesc(t, s.root, ""); int(got) != s.count {
			t.Fatalf("op %d: root desc %d, Len %d", i, got, s.count)
		}
	}
	if r.Snapshot().Len() < 5 {
		t.Errorf("only %d entries: the test did little", r.Snapshot().Len())
	}
	stop()
	r2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if s := r2.Snapshot(); int(checkDesc(t, s.root, "")) != s.count {
		t.Errorf("after Open: root desc %d, Len %d", s.root.desc, s.count)
	}
}
