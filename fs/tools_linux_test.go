//go:build linux

package fs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestTools drives the mount with ordinary tools: cp -a, diff -r, tar, mv,
// and git (which writes, renames and fsyncs a lot of small files).
func TestTools(t *testing.T) {
	n := start(t)
	_, self, _, _ := runtime.Caller(0)
	src := filepath.Dir(self) // this package's sources
	run := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t", "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run(n.Dir, "cp", "-a", src, "copy")
	run(n.Dir, "diff", "-r", src, "copy")
	run(n.Dir, "tar", "-cf", "copy.tar", "copy")
	must(t, os.Mkdir(filepath.Join(n.Dir, "untar"), 0o755))
	run(filepath.Join(n.Dir, "untar"), "tar", "-xf", "../copy.tar")
	run(n.Dir, "diff", "-r", src, "untar/copy")
	run(n.Dir, "mv", "untar/copy", "moved")
	run(n.Dir, "diff", "-r", src, "moved")
	repo := filepath.Join(n.Dir, "moved")
	run(repo, "git", "init", "-q")
	run(repo, "git", "add", ".")
	run(repo, "git", "commit", "-q", "-m", "in delugefs")
	if out := run(repo, "git", "fsck", "--strict"); strings.Contains(out, "error") {
		t.Fatalf("git fsck: %s", out)
	}
	if out := run(repo, "git", "status", "--porcelain"); out != "" {
		t.Fatalf("git status after commit: %s", out)
	}
	run(n.Dir, "rm", "-rf", "copy", "untar", "moved", "copy.tar")
	if ents, _ := os.ReadDir(n.Dir); len(ents) != 0 {
		t.Fatalf("left after rm -rf: %v", ents)
	}
}
