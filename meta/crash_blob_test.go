package meta_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/piece"
)

const crashBlobEnv = "DELUGEFS_META_CRASH_BLOB_CHILD"

// crashBlobChild writes small files as fs does until it is killed: 4
// writers each seal random bytes with SealSmall (no fsync), create the
// file with a lazy update, then commit its manifest with the blob
// attached (two writers with Update, two with UpdateLogged), printing each
// acknowledged step.
func crashBlobChild(root, round string) {
	st, err := piece.OpenStore(root)
	if err != nil {
		fmt.Println("open store failed:", err)
		os.Exit(2)
	}
	r, err := meta.Open(filepath.Join(root, "meta.git"), meta.Options{RestoreBlob: st.Restore, JournalSize: 64 << 20})
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(2)
	}
	go r.Serve(context.Background()) // runs until the process is killed
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	ack := func(s string) {
		mu.Lock()
		out.WriteString(s + "\n")
		out.Flush()
		mu.Unlock()
	}
	fail := func(what string, err error) {
		fmt.Println(what, "failed:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), uint64(len(round))+rand.Uint64()))
			d := fmt.Sprintf("%s-%d", round, g)
			if err := r.Update(ctx, "mkdir "+d, func(tx *meta.Tx) error {
				return tx.Put(d, &meta.Entry{Kind: meta.KindDir, Mode: 0o755})
			}); err != nil {
				fail("mkdir", err)
			}
			for i := 0; ; i++ {
				p := fmt.Sprintf("%s/f%d", d, i)
				if err := r.UpdateLazy(ctx, "create "+p, func(tx *meta.Tx) error {
					return tx.Put(p, &meta.Entry{Kind: meta.KindFile, Mode: 0o644})
				}); err != nil {
					fail("create", err)
				}
				ack("lazy " + p)
				data := make([]byte, 1+rng.IntN(8<<10))
				for k := range data {
					data[k] = byte(rng.Uint32())
				}
				f, err := st.TempFile()
				if err != nil {
					fail("temp", err)
				}
				f.Write(data)
				f.Close()
				info, got, err := st.SealSmall(f.Name(), nil)
				if err != nil {
					fail("seal", err)
				}
				write := r.Update
				if g%2 == 1 { // half the writers as fs does: an operations record, no commit
					write = r.UpdateLogged
				}
				if err := write(ctx, "write "+p, func(tx *meta.Tx) error {
					if err := tx.AttachBlob(info, got); err != nil {
						return err
					}
					return tx.Put(p, &meta.Entry{Kind: meta.KindFile, Mode: 0o644, Info: info})
				}); err != nil {
					fail("write", err)
				}
				ack("put " + p + " " + info.Hash().String())
			}
		})
	}
	wg.Wait()
}

// verifyBlob reads blob h from st and checks that it hashes to h.
func verifyBlob(st *piece.Store, e *meta.Entry) error {
	f, err := st.Open(e.Hash)
	if err != nil {
		return err
	}
	defer f.Close()
	hs := piece.NewHasher(e.Info.PieceLength)
	if _, err := io.Copy(hs, f); err != nil {
		return err
	}
	if hs.Len() != e.Size {
		return fmt.Errorf("blob %s holds %d bytes, want %d", e.Hash, hs.Len(), e.Size)
	}
	if got := hs.Info().Hash(); got != e.Hash {
		return fmt.Errorf("blob %s holds %d bytes hashing to %s", e.Hash, hs.Len(), got)
	}
	return nil
}

// blobFiles lists the data files under root/blobs.
func blobFiles(root string) map[string]bool {
	out := map[string]bool{}
	ps, _ := filepath.Glob(filepath.Join(root, "blobs", "??", "*"))
	for _, p := range ps {
		if !strings.HasSuffix(p, ".have") {
			out[p] = true
		}
	}
	return out
}

// TestCrashLazyAttachedBlobs kills (SIGKILL) a child in the middle of a
// storm of lazy creates and writes with attached blobs, then, as a power
// cut could, tears every blob file written since the last checkpoint
// (written without fsync). After reopening, every acknowledged write is
// there with its blob restored from the journal and verified; every file
// in the namespace has a blob that verifies; lazy creates are there or
// not, whole.
func TestCrashLazyAttachedBlobs(t *testing.T) {
	if root := os.Getenv(crashBlobEnv); root != "" {
		crashBlobChild(root, os.Getenv(crashBlobEnv+"_ROUND"))
		return
	}
	root := t.TempDir()
	want := map[string]bt.InfoHash{} // acknowledged writes
	for round := range 3 {
		before := blobFiles(root)
		target := 100 + rand.IntN(500)
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLazyAttachedBlobs$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashBlobEnv+"="+root, fmt.Sprintf("%s_ROUND=r%d", crashBlobEnv, round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n, lazies := 0, 0
		for sc.Scan() {
			// Lines after the kill were acknowledged before it: count them.
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 2 && f[0] == "lazy":
				lazies++
			case len(f) == 3 && f[0] == "put":
				h, err := bt.ParseInfoHash(f[2])
				if err != nil {
					t.Fatalf("child: %s", sc.Text())
				}
				want[f[1]] = h
			default:
				t.Fatalf("child: %s", sc.Text())
			}
			if n++; n == target {
				cmd.Process.Kill() // SIGKILL, mid storm
			}
		}
		cmd.Wait()
		if n < target {
			t.Fatalf("child ended after %d acknowledgments", n)
		}
		// The power cut: blob files written since the last checkpoint
		// were never fsynced; tear them all.
		torn := 0
		for p := range blobFiles(root) {
			if !before[p] {
				os.Chmod(p, 0o644)
				os.Truncate(p, 0)
				torn++
			}
		}

		st, err := piece.OpenStore(root)
		if err != nil {
			t.Fatal(err)
		}
		r, err := meta.Open(filepath.Join(root, "meta.git"), meta.Options{RestoreBlob: st.Restore})
		if err != nil {
			t.Fatalf("round %d: Open after kill: %v", round, err)
		}
		if p := r.Problems(); len(p) > 0 {
			t.Errorf("round %d: problems: %v", round, p)
		}
		snap := r.Snapshot()
		for p, h := range want {
			e, ok := snap.Get(p)
			if !ok || e.Hash != h {
				t.Errorf("round %d: acknowledged write of %s missing after kill (%v)", round, p, ok)
			}
		}
		files := 0
		snap.Walk(func(p string, e *meta.Entry) bool {
			if e.Kind == meta.KindFile && e.Size > 0 {
				files++
				if err := verifyBlob(st, e); err != nil {
					t.Errorf("round %d: %s: %v", round, p, err)
				}
			}
			return true
		})
		t.Logf("round %d: killed after %d acks (%d lazy creates); %d blob files torn; %d files, all verified",
			round, n, lazies, torn, files)
		r.Close()
		gitFsck(t, filepath.Join(root, "meta.git"))
		if t.Failed() {
			t.FailNow()
		}
	}
}
