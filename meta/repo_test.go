package meta_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delugefs/delugefs/bt"
	"github.com/delugefs/delugefs/internal/testwait"
	"github.com/delugefs/delugefs/meta"
	"github.com/delugefs/delugefs/meta/metatest"
)

// hostile names that must round-trip through git.
var hostile = []string{
	".git", ".GIT", ".Git", "..git", "...git", ".delugefs", ".DelugeFS", "..delugefs",
	"git", "delugefs", ".gitignore", ".git.", "x.git", "with space", " lead", "trail ",
	"new\nline", "tab\there", "\xff\xfe non-utf8", "é", "-", "a.b", "a-b", "z",
	strings.Repeat("n", 255), "\\back", "*?[]", "'\"", "~", ".hidden",
	".git ", "git~1", "GIT~1", "..git~1", ".gitmodules", ".GITMODULES.", ".g\u200cit", ".git::$INDEX_ALLOCATION",
	".delugefs.", "...", "..a", strings.Repeat(".", 252) + "git", ".gitattributes", ".mailmap", "MAILMA~2", "gitignore", "\u200c.git", "\u200c.\u200c.git",
}

func snapMap(s *meta.Snapshot) map[string]*meta.Entry {
	m := make(map[string]*meta.Entry)
	s.Walk(func(p string, e *meta.Entry) bool {
		m[p] = e
		return true
	})
	return m
}

func sameEntry(a, b *meta.Entry) bool {
	if a.Kind != b.Kind || a.Size != b.Size || a.Hash != b.Hash || a.Target != b.Target {
		return false
	}
	if a.Kind == meta.KindSymlink {
		return true // attributes of symlinks are not stored
	}
	if a.Mode != b.Mode || a.UID != b.UID || a.GID != b.GID || a.Mtime != b.Mtime || len(a.Xattrs) != len(b.Xattrs) {
		return false
	}
	for k, v := range a.Xattrs {
		if !bytes.Equal(b.Xattrs[k], v) {
			return false
		}
	}
	return true
}

func compareMaps(t *testing.T, got, want map[string]*meta.Entry) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%q missing", p)
			continue
		}
		if !sameEntry(g, w) {
			t.Errorf("%q: got %+v, want %+v", p, *g, *w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%q unexpected", p)
		}
	}
}

func populate(t *testing.T, s *metatest.Served) map[string]*meta.Entry {
	t.Helper()
	want := map[string]*meta.Entry{
		"movies":          metatest.Dir(0o750, 1234567890123456789),
		"movies/a.mkv":    metatest.File(3<<20+17, 1, 0o640, 42),
		"movies/run.sh":   metatest.File(10, 2, 0o755, 43),
		"empty":           metatest.File(0, 0, 0o600, 44),
		"emptydir":        metatest.Dir(0o700, 45),
		"emptydir2":       metatest.Dir(0o755, 0),
		"deep":            metatest.Dir(0o755, 1),
		"deep/er":         metatest.Dir(0o755, 2),
		"deep/er/est":     metatest.Dir(0o755, 3),
		"deep/er/est/f":   metatest.File(1, 3, 0o644, 4),
		"link":            metatest.Symlink("movies/a.mkv"),
		"deep/er/abslink": metatest.Symlink("/etc/passwd"),
	}
	x := metatest.File(5, 4, 0o644, 46)
	x.UID, x.GID = 1000, 100
	x.Xattrs = map[string][]byte{"user.a": []byte("1"), "user.bin": {0, 1, 2, 255}, "user.empty": {}}
	want["xattrs"] = x
	for i, n := range hostile {
		want["movies/"+n] = metatest.File(int64(i), uint64(100+i), 0o644, int64(i))
		want["deep/"+n] = metatest.Dir(0o755, int64(i))
		want["deep/"+n+"/"+n] = metatest.File(int64(i+1), uint64(200+i), 0o644, int64(i))
	}
	// Create parents first: sort by depth.
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	for depth := 1; depth <= 4; depth++ {
		s.Do(t, fmt.Sprintf("populate depth %d", depth), func(tx *meta.Tx) error {
			for _, p := range paths {
				if strings.Count(p, "/")+1 == depth {
					if err := tx.Put(p, want[p]); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	for p, e := range want { // fill derived fields for comparison
		if e.Info != nil {
			e.Size, e.Hash = e.Info.Length, e.Info.Hash()
		}
		if e.Kind == meta.KindSymlink {
			e.Size = int64(len(e.Target))
		}
		want[p] = e
	}
	return want
}

func TestPersistReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	s := metatest.Serve(t, dir, meta.Options{})
	want := populate(t, s)
	compareMaps(t, snapMap(s.Snapshot()), want)
	if got := s.Snapshot().Len(); got != len(want) {
		t.Errorf("Len = %d, want %d", got, len(want))
	}
	head := s.Head()
	s.Stop()

	s2 := metatest.Serve(t, dir, meta.Options{})
	if s2.Head() != head {
		t.Errorf("head after reopen %s, want %s", s2.Head(), head)
	}
	if p := s2.Problems(); len(p) > 0 {
		t.Errorf("problems: %v", p)
	}
	compareMaps(t, snapMap(s2.Snapshot()), want)
	if got := s2.Snapshot().Len(); got != len(want) {
		t.Errorf("Len after reopen = %d, want %d", got, len(want))
	}
	// ReadDir is sorted by name and agrees with Get.
	ents, ok := s2.Snapshot().ReadDir("movies")
	if !ok || len(ents) != len(hostile)+2 {
		t.Fatalf("ReadDir(movies) = %d entries, %v", len(ents), ok)
	}
	for i := 1; i < len(ents); i++ {
		if ents[i-1].Name >= ents[i].Name {
			t.Errorf("ReadDir not sorted: %q before %q", ents[i-1].Name, ents[i].Name)
		}
	}
	// A second reopen after more changes keeps unchanged subtrees.
	s2.Do(t, "rm movies/a.mkv", func(tx *meta.Tx) error { return tx.Remove("movies/a.mkv") })
	delete(want, "movies/a.mkv")
	s2.Stop()
	s3 := metatest.Serve(t, dir, meta.Options{})
	compareMaps(t, snapMap(s3.Snapshot()), want)
	gitFsck(t, dir)
}

func git(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("git", append([]string{"--git-dir", dir}, args...)...)
	cmd.Env = append(cmd.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("git %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("git %v: %v", args, err)
	}
	return out
}

func gitFsck(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("git", "--git-dir", dir, "fsck", "--strict", "--no-dangling")
	cmd.Env = append(cmd.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("git fsck: %v\n%s", err, out)
	}
}

func TestStockGit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	s := metatest.Serve(t, dir, meta.Options{})
	want := populate(t, s)
	s.Do(t, "write movies/b.mkv", func(tx *meta.Tx) error {
		return tx.Put("movies/b.mkv", metatest.File(1<<20, 9, 0o644, 1))
	})
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	log := string(git(t, dir, "log", "--format=%s"))
	if !strings.HasPrefix(log, "write movies/b.mkv\npopulate depth 4\n") {
		t.Errorf("git log:\n%s", log)
	}
	gitFsck(t, dir)

	for _, p := range []string{"movies/a.mkv", "movies/b.mkv", "xattrs"} {
		data := git(t, dir, "cat-file", "blob", "HEAD:"+p)
		mi, err := bt.ParseMetaInfo(data)
		if err != nil {
			t.Fatalf("%s: ParseMetaInfo: %v", p, err)
		}
		e, _ := s.Snapshot().Get(p)
		if mi.Info.Hash() != e.Hash || mi.Info.Length != e.Size {
			t.Errorf("%s: torrent info-hash %s length %d, want %s %d", p, mi.Info.Hash(), mi.Info.Length, e.Hash, e.Size)
		}
	}
	// Escaped names as git shows them; the marker is there.
	ls := string(git(t, dir, "ls-tree", "--name-only", "-z", "HEAD:movies"))
	names := strings.Split(strings.TrimSuffix(ls, "\x00"), "\x00")
	has := map[string]bool{}
	for _, n := range names {
		has[n] = true
	}
	for _, n := range []string{".delugefs", "..git", "..GIT", "...git", "..delugefs", "..DelugeFS", "git", "..gitignore"} {
		if !has[n] {
			t.Errorf("git tree movies lacks %q: %q", n, names)
		}
	}
	if has[".git"] {
		t.Errorf("git tree holds .git")
	}
	if got := string(git(t, dir, "cat-file", "blob", "HEAD:link")); got != "movies/a.mkv" {
		t.Errorf("symlink blob %q", got)
	}
	mode := string(git(t, dir, "ls-tree", "HEAD", "link"))
	if !strings.HasPrefix(mode, "120000 ") {
		t.Errorf("symlink ls-tree %q", mode)
	}
	if m := string(git(t, dir, "ls-tree", "HEAD:movies", "run.sh")); !strings.HasPrefix(m, "100755 ") {
		t.Errorf("executable ls-tree %q", m)
	}
	_ = want
}

func TestGroupCommit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	s := metatest.Serve(t, dir, meta.Options{})
	s.Do(t, "mkdir d", func(tx *meta.Tx) error { return tx.Put("d", metatest.Dir(0o755, 0)) })
	watch := s.Watch()
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			p := fmt.Sprintf("d/f%03d", i)
			errs <- s.Update(context.Background(), "write "+p, func(tx *meta.Tx) error {
				if i%10 == 0 {
					// Put then fail: must leave no trace.
					tx.Put(p, metatest.File(1, uint64(i), 0o644, 0))
					return errors.New("boom")
				}
				return tx.Put(p, metatest.File(1, uint64(i), 0o644, 0))
			})
		})
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			if err.Error() != "boom" {
				t.Errorf("update: %v", err)
			}
			failed++
		}
	}
	if failed != n/10 {
		t.Errorf("%d failed updates, want %d", failed, n/10)
	}
	ents, _ := s.Snapshot().ReadDir("d")
	if len(ents) != n-n/10 {
		t.Errorf("%d files, want %d", len(ents), n-n/10)
	}
	for _, e := range ents {
		var i int
		fmt.Sscanf(e.Name, "f%d", &i)
		if i%10 == 0 {
			t.Errorf("failed update left %s", e.Name)
		}
	}
	select {
	case <-watch:
	case <-time.After(10 * time.Second):
		t.Errorf("no watch notification")
	}
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	commits := strings.Count(string(git(t, dir, "log", "--format=%H")), "\n")
	t.Logf("%d updates in %d commits", n, commits-1)
	if commits > n {
		t.Errorf("%d commits for %d updates", commits, n)
	}
	// A grouped commit lists its messages in the body.
	body := string(git(t, dir, "log", "-1", "--format=%B"))
	if !strings.Contains(body, "write d/f") {
		t.Errorf("commit message %q", body)
	}
	// Panics are errors; a no-op makes no commit.
	head := s.Head()
	err := s.Update(context.Background(), "panic", func(tx *meta.Tx) error { panic("oops") })
	if err == nil || !strings.Contains(err.Error(), "oops") {
		t.Errorf("panic: %v", err)
	}
	s.Do(t, "nothing", func(tx *meta.Tx) error { return nil })
	if s.Head() != head {
		t.Errorf("no-op update made a commit")
	}
}

func TestUpdateContext(t *testing.T) {
	r, err := meta.Open(filepath.Join(t.TempDir(), "meta.git"), meta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Nobody serves: the context bounds the wait.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = r.Update(ctx, "x", func(tx *meta.Tx) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Update without Serve: %v", err)
	}
	r.Close()
	if err := r.Update(context.Background(), "x", func(tx *meta.Tx) error { return nil }); !errors.Is(err, meta.ErrClosed) {
		t.Errorf("Update after Close: %v", err)
	}
}

func TestOpenLocked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	s := metatest.Serve(t, dir, meta.Options{})
	if _, err := meta.Open(dir, meta.Options{}); err == nil {
		t.Errorf("second Open of a repository in use succeeded")
	}
	s.Stop()
	s2 := metatest.Serve(t, dir, meta.Options{})
	s2.Stop()
}

// TestInlineFlush: an update made while the actor is idle runs on the
// caller's goroutine; the flush timer must still write its objects and
// branch, so stock git sees it without a Sync. Updates from several
// goroutines, some inline and some queued behind a running batch, each
// land once and in each caller's order.
func TestInlineFlush(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	s := metatest.Serve(t, dir, meta.Options{FlushDelay: 5 * time.Millisecond})
	s.Do(t, "mkdir d", func(tx *meta.Tx) error { return tx.Put("d", metatest.Dir(0o755, 0)) })
	head := s.Head().String()
	testwait.For(t, 10*time.Second, "branch written without Sync", func() bool {
		out, err := exec.Command("git", "--git-dir", dir, "rev-parse", "refs/heads/main").Output()
		return err == nil && strings.TrimSpace(string(out)) == head
	})
	const callers, each = 4, 50
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for k := range each {
				p := fmt.Sprintf("d/c%d", c)
				err := s.Update(context.Background(), "write "+p, func(tx *meta.Tx) error {
					if k > 0 {
						// This caller's previous update is there.
						if e, ok := tx.Get(p); !ok || e.Size != int64(k) {
							return fmt.Errorf("%s before update %d: %v", p, k, e)
						}
					}
					return tx.Put(p, metatest.File(int64(k+1), uint64(k), 0o644, 0))
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	head = s.Head().String()
	testwait.For(t, 10*time.Second, "last commit's branch written without Sync", func() bool {
		out, err := exec.Command("git", "--git-dir", dir, "rev-parse", "refs/heads/main").Output()
		return err == nil && strings.TrimSpace(string(out)) == head
	})
	for c := range callers {
		out := git(t, dir, "cat-file", "-p", "main:d/"+fmt.Sprintf("c%d", c))
		if !bytes.Contains(out, []byte(fmt.Sprintf("6:lengthi%de", each))) {
			t.Errorf("c%d: %q", c, out)
		}
	}
}
