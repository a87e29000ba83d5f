package main

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUserMount: a user who is not root creates a volume and mounts it
// (through the setuid fusermount3, as on a desktop where /dev/fuse is
// 0666). The new root is theirs, so they can write in it (the kernel checks
// its mode bits), and the mount works although only root may set the
// kernel's read-ahead.
func TestUserMount(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("run the tests as root: this one becomes another user")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if st, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatal(err)
	} else if mode := st.Mode().Perm(); mode&0o006 != 0o006 {
		if err := os.Chmod("/dev/fuse", 0o666); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod("/dev/fuse", mode) })
	}
	// The user needs to reach the binary and own the directories.
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	root, mnt := filepath.Join(dir, "root"), filepath.Join(dir, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	must(t, os.Chown(dir, uid, gid))
	must(t, os.Chown(mnt, uid, gid))
	cmd := exec.Command(bin, withLoopback([]string{"--create", "--id", "users", "--root", root, "--mount", mnt})...)
	cmd.SysProcAttr = cred
	d := startCmd(t, cmd)
	d.waitLine(t, "mounted at")
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	// Only the user can look into their mount (no allow_other): even
	// root's stat is refused, so the user checks the root's owner too.
	sh := exec.Command("sh", "-c", "echo hi > f && mkdir d && cat f && stat -c '%u %Y' .")
	sh.Dir, sh.SysProcAttr = mnt, cred
	out, err := sh.CombinedOutput()
	lines := strings.Fields(string(out))
	if err != nil || len(lines) != 3 || lines[0] != "hi" {
		t.Fatalf("the user writing in their mount: %v: %s\nstderr of delugefs:\n%s", err, out, d.stderr.String())
	}
	if mtime, _ := strconv.ParseInt(lines[2], 10, 64); lines[1] != u.Uid || mtime < time.Now().Add(-time.Hour).Unix() {
		t.Errorf("the mount's root: uid %s (want %s), mtime %s", lines[1], u.Uid, lines[2])
	}
	d.cmd.Process.Signal(syscall.SIGINT)
	if err := d.wait(t); err != nil {
		t.Fatalf("exit after SIGINT: %v; stderr:\n%s", err, d.stderr.String())
	}
	if isMounted(t, mnt) {
		t.Fatal("still mounted after SIGINT")
	}
}
