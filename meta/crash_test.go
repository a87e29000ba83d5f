package meta_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/meta/metatest"
)

const crashEnv = "DELUGEFS_META_CRASH_CHILD"

// crashChild runs a commit storm until killed: each of 8 writers creates
// files in its own directory, renames every third, and prints each
// acknowledged operation.
func crashChild(dir, round string) {
	r, err := meta.Open(dir, meta.Options{})
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
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			d := fmt.Sprintf("%s-%d", round, g)
			if err := r.Update(context.Background(), "mkdir "+d, func(tx *meta.Tx) error {
				return tx.Put(d, metatest.Dir(0o755, 0))
			}); err != nil {
				fmt.Println("mkdir failed:", err)
				os.Exit(2)
			}
			ack(fmt.Sprintf("%d put %s", g, d))
			for i := 0; ; i++ {
				p := fmt.Sprintf("%s/f%d", d, i)
				err := r.Update(context.Background(), "write "+p, func(tx *meta.Tx) error {
					return tx.Put(p, metatest.File(int64(i%4096), uint64(i), 0o644, int64(i)))
				})
				if err != nil {
					fmt.Println("put failed:", err)
					os.Exit(2)
				}
				ack(fmt.Sprintf("%d put %s", g, p))
				if i%3 == 0 {
					err := r.Update(context.Background(), "rename "+p, func(tx *meta.Tx) error {
						return tx.Rename(p, p+".r")
					})
					if err != nil {
						fmt.Println("rename failed:", err)
						os.Exit(2)
					}
					ack(fmt.Sprintf("%d mv %s %s", g, p, p+".r"))
				}
			}
		})
	}
	wg.Wait()
}

func TestCrash(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir, os.Getenv(crashEnv+"_ROUND"))
		return
	}
	dir := filepath.Join(t.TempDir(), "meta.git")
	want := map[string]bool{} // paths that must exist
	for round := range 4 {
		target := 100 + rand.IntN(600)
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrash$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, fmt.Sprintf("%s_ROUND=r%d", crashEnv, round))
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
			if len(f) < 3 {
				t.Fatalf("child: %s", sc.Text())
			}
			switch f[1] {
			case "put":
				want[f[2]] = true
			case "mv":
				delete(want, f[2])
				want[f[3]] = true
			default:
				t.Fatalf("child: %s", sc.Text())
			}
			// Lines read after the kill were acknowledged before it (the
			// pipe holds them): they count too.
			if n++; n == target {
				cmd.Process.Kill() // SIGKILL, mid commit storm
			}
		}
		cmd.Wait()
		if n < target {
			t.Fatalf("child ended after %d acknowledgments", n)
		}

		start := time.Now()
		r, err := meta.Open(dir, meta.Options{})
		if err != nil {
			t.Fatalf("round %d: Open after kill: %v", round, err)
		}
		if p := r.Problems(); len(p) > 0 {
			t.Errorf("round %d: problems: %v", round, p)
		}
		snap := r.Snapshot()
		got := map[string]bool{}
		snap.Walk(func(p string, e *meta.Entry) bool { got[p] = true; return true })
		for p := range want {
			if !got[p] {
				// Only an operation in flight may have moved it.
				if got[p+".r"] {
					delete(want, p)
					want[p+".r"] = true
					continue
				}
				t.Errorf("round %d: acknowledged %q missing after kill", round, p)
			}
		}
		extra := 0
		for p := range got {
			if !want[p] {
				extra++ // an unacknowledged commit that made it
				want[p] = true
				if strings.HasSuffix(p, ".r") {
					delete(want, strings.TrimSuffix(p, ".r"))
				}
			}
		}
		if extra > 8 {
			t.Errorf("round %d: %d unacknowledged paths, more than the 8 writers had in flight", round, extra)
		}
		t.Logf("round %d: killed after %d acks; reopened %d entries in %v; %d in-flight commits survived",
			round, n, snap.Len(), time.Since(start), extra)
		r.Close()
		gitFsck(t, dir)
		if t.Failed() {
			t.FailNow()
		}
	}
}
