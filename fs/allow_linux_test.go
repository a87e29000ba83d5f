//go:build linux

package fs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/delugefs/delugefs/fs"
	"github.com/delugefs/delugefs/fs/fstest"
)

// TestAllowOther mounts with --allow-other and lets a process of another
// user (nobody) use the mount: the kernel enforces the stored mode bits.
func TestAllowOther(t *testing.T) {
	const nobody = 65534
	mnt := filepath.Join(t.TempDir(), "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	for d := filepath.Dir(mnt); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		must(t, os.Chmod(d, 0o755)) // let nobody reach the mount point
	}
	n := fstest.StartAt(t, t.TempDir(), mnt, fstest.Config{Mount: fs.MountOptions{AllowOther: true}})
	at := func(p string) string { return filepath.Join(n.Dir, p) }
	must(t, os.WriteFile(at("pub"), []byte("public"), 0o644))
	must(t, os.WriteFile(at("priv"), []byte("private"), 0o600))
	must(t, os.Mkdir(at("ro"), 0o755))
	must(t, os.Mkdir(at("mine"), 0o755))
	must(t, os.Chown(at("mine"), nobody, nobody))
	as := func(args ...string) (string, error) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := as("/bin/cat", at("pub")); err != nil || out != "public" {
		t.Fatalf("nobody reads pub: %q %v", out, err)
	}
	if out, err := as("/bin/cat", at("priv")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Fatalf("nobody reads priv: %q %v", out, err)
	}
	if out, err := as("/bin/sh", "-c", "echo x > "+at("ro/new")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Fatalf("nobody writes into ro: %q %v", out, err)
	}
	if out, err := as("/bin/sh", "-c", "echo hello > "+at("mine/new")); err != nil {
		t.Fatalf("nobody writes into mine: %q %v", out, err)
	}
	var st syscall.Stat_t
	must(t, syscall.Stat(at("mine/new"), &st))
	if st.Uid != nobody || st.Gid != nobody {
		t.Fatalf("file made by nobody is owned by %d:%d", st.Uid, st.Gid)
	}
	if got := readFile(t, at("mine/new")); string(got) != "hello\n" {
		t.Fatalf("mine/new: %q", got)
	}
}
