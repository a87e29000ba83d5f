package meta_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/meta/metatest"
)

const crashSyncEnv = "DELUGEFS_META_CRASH_SYNC_CHILD"

// crashSyncChild alternates local commits and integrations of the source
// repository's heads (each a merge) until killed, printing each
// acknowledged one.
func crashSyncChild(dir, src, round, heads string, journal int64) {
	r, err := meta.Open(dir, meta.Options{NodeID: "target", JournalSize: journal})
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(2)
	}
	go r.Serve(context.Background()) // runs until the process is killed
	st := filesystem.NewStorage(osfs.New(src), cache.NewObjectLRUDefault())
	ctx := context.Background()
	for i, hex := range strings.Split(heads, ",") {
		p := fmt.Sprintf("%s-%d", round, i)
		if err := r.Update(ctx, "local "+p, func(tx *meta.Tx) error {
			return tx.Put(p, metatest.File(int64(1+i), uint64(i), 0o644, int64(i)))
		}); err != nil {
			fmt.Println("update failed:", err)
			os.Exit(2)
		}
		fmt.Println("put", p)
		res, err := r.Integrate(ctx, plumbing.NewHash(hex), st)
		if err != nil {
			fmt.Println("integrate failed:", err)
			os.Exit(2)
		}
		fmt.Println("int", i, res.Head)
	}
	fmt.Println("done")
	select {} // wait for the kill
}

func TestCrashIntegrate(t *testing.T) {
	if dir := os.Getenv(crashSyncEnv); dir != "" {
		j, _ := strconv.ParseInt(os.Getenv(crashSyncEnv+"_JOURNAL"), 10, 64)
		crashSyncChild(dir, os.Getenv(crashSyncEnv+"_SRC"), os.Getenv(crashSyncEnv+"_ROUND"), os.Getenv(crashSyncEnv+"_HEADS"), j)
		return
	}
	// The source: a chain of commits, each adding a file under s/ (and
	// changing a big directory, so that merges carry some weight).
	srcDir := filepath.Join(t.TempDir(), "src.git")
	dir := filepath.Join(t.TempDir(), "meta.git")
	src := metatest.Serve(t, srcDir, meta.Options{NodeID: "source"})
	src.Do(t, "mkdir", func(tx *meta.Tx) error {
		if err := tx.Put("s", metatest.Dir(0o755, 0)); err != nil {
			return err
		}
		return tx.Put("big", metatest.Dir(0o755, 0))
	})
	// The target starts from the source's first commit, as a clone.
	tgt := metatest.Serve(t, dir, meta.Options{NodeID: "target"})
	st := filesystem.NewStorage(osfs.New(srcDir), cache.NewObjectLRUDefault())
	if err := src.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := tgt.Integrate(context.Background(), src.Head(), st); err != nil {
		t.Fatal(err)
	}
	tgt.Stop()
	st.Close()
	var heads []string
	for i := range 200 {
		src.Do(t, "src", func(tx *meta.Tx) error {
			for k := range 20 {
				if err := tx.Put(fmt.Sprintf("big/%d", (i*20+k)%500), metatest.File(int64(1+k), uint64(i*100+k), 0o644, int64(i))); err != nil {
					return err
				}
			}
			return tx.Put(fmt.Sprintf("s/f%d", i), metatest.File(int64(1+i), uint64(1000+i), 0o644, int64(i)))
		})
		heads = append(heads, src.Head().String())
	}
	src.Stop()

	want := map[string]bool{}
	integrated := -1
	for round := range 4 {
		journal := int64(0)
		if round%2 == 1 {
			journal = 64 << 10 // checkpoints (and the slow path for large records) all the time
		}
		target := 20 + rand.IntN(200)
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashIntegrate$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashSyncEnv+"="+dir, crashSyncEnv+"_SRC="+srcDir,
			fmt.Sprintf("%s_ROUND=r%d", crashSyncEnv, round), crashSyncEnv+"_HEADS="+strings.Join(heads, ","),
			fmt.Sprintf("%s_JOURNAL=%d", crashSyncEnv, journal))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 2 && f[0] == "put":
				want[f[1]] = true
			case len(f) == 3 && f[0] == "int":
				i, _ := strconv.Atoi(f[1])
				integrated = max(integrated, i)
			case len(f) == 1 && f[0] == "done":
				cmd.Process.Kill()
			default:
				t.Fatalf("child: %s", sc.Text())
			}
			if n++; n == target {
				cmd.Process.Kill() // SIGKILL, amid commits and integrations
			}
		}
		cmd.Wait()

		r, err := meta.Open(dir, meta.Options{NodeID: "target"})
		if err != nil {
			t.Fatalf("round %d: Open after kill: %v", round, err)
		}
		if p := r.Problems(); len(p) > 0 {
			t.Errorf("round %d: problems: %v", round, p)
		}
		snap := r.Snapshot()
		for p := range want {
			if _, ok := snap.Get(p); !ok {
				t.Errorf("round %d: acknowledged %q missing", round, p)
			}
		}
		for i := 0; i <= integrated; i++ {
			if _, ok := snap.Get(fmt.Sprintf("s/f%d", i)); !ok {
				t.Errorf("round %d: s/f%d of acknowledged integration %d missing", round, i, integrated)
			}
		}
		t.Logf("round %d: killed after %d acks; %d integrations acknowledged; %d entries", round, n, integrated+1, snap.Len())
		r.Close()
		gitFsck(t, dir)
		if t.Failed() {
			t.FailNow()
		}
	}
	// The repository goes on: the last heads merge in.
	tgt = metatest.Serve(t, dir, meta.Options{NodeID: "target"})
	st = filesystem.NewStorage(osfs.New(srcDir), cache.NewObjectLRUDefault())
	defer st.Close()
	res, err := tgt.Integrate(context.Background(), plumbing.NewHash(heads[len(heads)-1]), st)
	if err != nil {
		t.Fatal(err)
	}
	for i := range heads {
		if _, ok := tgt.Snapshot().Get(fmt.Sprintf("s/f%d", i)); !ok {
			t.Errorf("s/f%d missing after the last integration (%+v)", i, res)
		}
	}
	tgt.Stop()
	gitFsck(t, dir)
}
