//go:build linux

package fs_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	fsxSeed = flag.Uint64("fsx.seed", 0, "seed of TestModel (0: from the clock)")
	fsxOps  = flag.Int("fsx.ops", 2500, "operations TestModel runs")
)

// side is one of the two trees TestModel drives: the mount or a plain
// directory (the model).
type side struct {
	dir string
	h   *os.File // the one long-lived handle, or nil
}

// errClass reduces an error to its errno for comparison.
func errClass(err error) string {
	if err == nil {
		return "ok"
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e.Error()
	}
	if errors.Is(err, io.EOF) {
		return "EOF"
	}
	return "other: " + err.Error()
}

// TestModel applies thousands of random operations (create, write at random
// offsets, truncate, rename, unlink, read, through short-lived and one
// long-lived handle) both to the mount and to a plain directory and
// compares the results after each step. On failure it prints the seed:
// rerun with -fsx.seed=N.
func TestModel(t *testing.T) {
	seed := *fsxSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -run TestModel -fsx.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	n := start(t)
	sides := []*side{{dir: n.Dir}, {dir: t.TempDir()}}
	t.Cleanup(func() {
		for _, s := range sides {
			if s.h != nil {
				s.h.Close()
			}
		}
	})
	for _, s := range sides {
		must(t, os.Mkdir(filepath.Join(s.dir, "d"), 0o755))
	}
	names := []string{"a", "b", "c", "d/x", "d/y", "e", "d2/x", "d2"}
	dirs := []string{"d", "d2"}
	const maxSize = 300 << 10
	var log []string
	fail := func(format string, args ...any) {
		t.Helper()
		start := max(0, len(log)-15)
		t.Fatalf("seed %d, step %d: %s\nlast steps:\n  %s", seed, len(log), fmt.Sprintf(format, args...), strings.Join(log[start:], "\n  "))
	}
	data := func(k int) []byte {
		b := make([]byte, k)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	var hname string // the name the long-lived handle was opened with
	deadline := time.Now().Add(90 * time.Second)
	for step := 0; step < *fsxOps && time.Now().Before(deadline); step++ {
		name := names[rng.IntN(len(names))]
		var op string
		var do func(s *side) (string, error) // result text and error
		switch r := rng.IntN(100); {
		case r < 15:
			content := data(rng.IntN(maxSize))
			if rng.IntN(4) == 0 {
				content = content[:rng.IntN(100)]
			}
			op = fmt.Sprintf("create %s (%d bytes)", name, len(content))
			do = func(s *side) (string, error) {
				return "", os.WriteFile(filepath.Join(s.dir, name), content, 0o644)
			}
		case r < 35:
			off := rng.Int64N(maxSize + 64<<10)
			content := data(1 + rng.IntN(64<<10))
			op = fmt.Sprintf("write %s at %d (%d bytes)", name, off, len(content))
			do = func(s *side) (string, error) {
				f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_RDWR, 0)
				if err != nil {
					return "", err
				}
				_, werr := f.WriteAt(content, off)
				return "", errors.Join(werr, f.Close())
			}
		case r < 45:
			size := rng.Int64N(maxSize + 64<<10)
			op = fmt.Sprintf("truncate %s %d", name, size)
			do = func(s *side) (string, error) { return "", os.Truncate(filepath.Join(s.dir, name), size) }
		case r < 55:
			to := names[rng.IntN(len(names))]
			op = fmt.Sprintf("rename %s %s", name, to)
			do = func(s *side) (string, error) {
				return "", os.Rename(filepath.Join(s.dir, name), filepath.Join(s.dir, to))
			}
		case r < 62:
			op = "unlink " + name
			do = func(s *side) (string, error) { return "", os.Remove(filepath.Join(s.dir, name)) }
		case r < 75:
			op = "read " + name
			do = func(s *side) (string, error) {
				b, err := os.ReadFile(filepath.Join(s.dir, name))
				return string(b), err
			}
		case r < 80:
			// open the long-lived handle (closing the previous one)
			op = "hopen " + name
			do = func(s *side) (string, error) {
				var cerr error
				if s.h != nil {
					cerr = s.h.Close()
				}
				h, err := os.OpenFile(filepath.Join(s.dir, name), os.O_RDWR, 0)
				s.h = h
				if err != nil {
					s.h = nil
				}
				return "", errors.Join(cerr, err)
			}
			hname = name
		case r < 90:
			off := rng.Int64N(maxSize)
			content := data(1 + rng.IntN(32<<10))
			op = fmt.Sprintf("hwrite (%s) at %d (%d bytes)", hname, off, len(content))
			do = func(s *side) (string, error) {
				if s.h == nil {
					return "no handle", nil
				}
				_, err := s.h.WriteAt(content, off)
				return "", err
			}
		case r < 94:
			off, k := rng.Int64N(maxSize), rng.IntN(64<<10)
			op = fmt.Sprintf("hread (%s) at %d (%d bytes)", hname, off, k)
			do = func(s *side) (string, error) {
				if s.h == nil {
					return "no handle", nil
				}
				buf := make([]byte, k)
				m, err := s.h.ReadAt(buf, off)
				if err == io.EOF {
					err = nil
				}
				return string(buf[:m]), err
			}
		case r < 96:
			size := rng.Int64N(maxSize)
			op = fmt.Sprintf("hftruncate (%s) %d", hname, size)
			do = func(s *side) (string, error) {
				if s.h == nil {
					return "no handle", nil
				}
				return "", s.h.Truncate(size)
			}
		case r < 98:
			d := dirs[rng.IntN(len(dirs))]
			switch rng.IntN(3) {
			case 0:
				op = "mkdir " + d
				do = func(s *side) (string, error) { return "", os.Mkdir(filepath.Join(s.dir, d), 0o755) }
			case 1:
				op = "rmdir " + d
				do = func(s *side) (string, error) { return "", syscall.Rmdir(filepath.Join(s.dir, d)) }
			default:
				to := dirs[rng.IntN(len(dirs))] + []string{"", "/sub"}[rng.IntN(2)]
				op = fmt.Sprintf("rename dir %s %s", d, to)
				do = func(s *side) (string, error) {
					return "", syscall.Rename(filepath.Join(s.dir, d), filepath.Join(s.dir, to))
				}
			}
		default:
			op = "hclose (" + hname + ")"
			do = func(s *side) (string, error) {
				if s.h == nil {
					return "no handle", nil
				}
				err := s.h.Close()
				s.h = nil
				return "", err
			}
		}
		log = append(log, op)
		var outs, errs [2]string
		for i, s := range sides {
			out, err := do(s)
			outs[i], errs[i] = out, errClass(err)
		}
		if errs[0] != errs[1] {
			fail("%s: mount says %s, model says %s", op, errs[0], errs[1])
		}
		if outs[0] != outs[1] {
			fail("%s: mount returned %d bytes, model %d (first difference at %d)", op, len(outs[0]), len(outs[1]), firstDiff(outs[0], outs[1]))
		}
		compareTrees(t, fail, sides[0].dir, sides[1].dir, step%25 == 0)
	}
	t.Logf("%d steps", len(log))
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// compareTrees compares names, kinds and sizes of both trees, and the
// contents of every file when full is set.
func compareTrees(t *testing.T, fail func(string, ...any), mnt, model string, full bool) {
	t.Helper()
	list := func(root string) []string {
		var out []string
		err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			size := fi.Size()
			if fi.IsDir() {
				size = 0
			}
			out = append(out, fmt.Sprintf("%s %v %d", rel, fi.Mode().Type(), size))
			return nil
		})
		if err != nil {
			fail("walk %s: %v", root, err)
		}
		return out
	}
	a, b := list(mnt), list(model)
	if !slices.Equal(a, b) {
		fail("trees differ:\nmount %q\nmodel %q", a, b)
	}
	if !full {
		return
	}
	for _, line := range a {
		rel := line[:strings.IndexByte(line, ' ')]
		if fi, _ := os.Lstat(filepath.Join(model, rel)); fi.IsDir() {
			continue
		}
		x, err1 := os.ReadFile(filepath.Join(mnt, rel))
		y, err2 := os.ReadFile(filepath.Join(model, rel))
		if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
			fail("contents of %s differ (%v, %v; first difference at %d)", rel, err1, err2, firstDiff(string(x), string(y)))
		}
	}
}
