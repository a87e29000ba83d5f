package meta

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/delugefs/delugefs/bt"
)

func gitCmd(t *testing.T, dir string, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"--git-dir", dir}, args...)...)
	cmd.Env = append(cmd.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// checkAllObjects reads every object stock git lists through a packSet
// and checks that it hashes to its id.
func checkAllObjects(t *testing.T, dir string, gen uint64) int {
	t.Helper()
	ps := newPackSet(dir)
	defer ps.close()
	if err := ps.refresh(gen); err != nil {
		t.Fatal(err)
	}
	out := gitCmd(t, dir, "", "cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objecttype) %(objectsize)")
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var id, typ string
		var size int
		if _, err := fmt.Sscan(l, &id, &typ, &size); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		h := plumbing.NewHash(id)
		if !ps.has(h) {
			t.Fatalf("%s: not found", id)
		}
		ot, data, err := ps.read(h, 0)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if ot.String() != typ || len(data) != size || objectHash(typ, data) != h {
			t.Fatalf("%s: read a %v of %d bytes, want a %s of %d", id, ot, len(data), typ, size)
		}
		n++
	}
	if ps.has(plumbing.NewHash("0123456789012345678901234567890123456789")) {
		t.Error("has an object nobody wrote")
	}
	return n
}

// TestPackSetRead reads every object of packs written by meta (reference
// deltas) and of packs git gc rewrote (offset deltas), and loose objects.
func TestPackSetRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	r, stop := openServed(t, dir, Options{})
	for i := range 40 {
		err := r.Update(context.Background(), "fill", func(tx *Tx) error {
			if i == 0 {
				if err := tx.Put("big", &Entry{Kind: KindDir, Mode: 0o755}); err != nil {
					return err
				}
			}
			for k := range 100 {
				e := &Entry{Kind: KindFile, Mode: 0o644, Info: bt.NewInfo(10, 1<<18, make([]byte, 20)), Mtime: int64(i*100 + k)}
				if err := tx.Put(fmt.Sprintf("big/f%d", i*50+k), e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop()
	n := checkAllObjects(t, dir, 1)
	gitCmd(t, dir, "", "repack", "-a", "-d", "-f", "-q", "--window=20", "--depth=50")
	idx, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "*.idx"))
	if len(idx) != 1 {
		t.Fatalf("packs after repack: %v", idx)
	}
	if v := gitCmd(t, dir, "", "verify-pack", "-s", idx[0]); !strings.Contains(v, "chain length = 2") {
		t.Errorf("no delta chains after repack:\n%s", v)
	}
	loose := strings.TrimSpace(gitCmd(t, dir, "a loose blob\n", "hash-object", "-w", "--stdin"))
	if m := checkAllObjects(t, dir, 2); m != n+1 {
		t.Errorf("%d objects after gc, %d before", m, n)
	}
	ps := newPackSet(dir)
	defer ps.close()
	ps.refresh(1)
	if _, data, err := ps.read(plumbing.NewHash(loose), 0); err != nil || string(data) != "a loose blob\n" {
		t.Errorf("loose object: %q %v", data, err)
	}
}
