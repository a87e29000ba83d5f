package meta

import (
	"crypto/sha1"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"

	"github.com/delugefs/delugefs/bt"
)

// writeRaw writes a hand-made commit whose root tree is ents and points the
// branch at it, as a hostile peer or a damaged disk could.
func writeRaw(t *testing.T, r *Repo, ents []treeEnt) {
	t.Helper()
	tree := encodeTree(ents)
	th := objectHash("tree", tree)
	if err := r.w.write(th, "tree", tree); err != nil {
		t.Fatal(err)
	}
	c := r.encodeCommit(th, plumbing.ZeroHash, 1, "hostile\n")
	ch := objectHash("commit", c)
	if err := r.w.write(ch, "commit", c); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(r.gitDir, "refs", "heads", "main")
	if err := os.WriteFile(ref, []byte(ch.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func blob(t *testing.T, r *Repo, data string) plumbing.Hash {
	t.Helper()
	h := blobHash([]byte(data))
	if err := r.w.write(h, "blob", []byte(data)); err != nil {
		t.Fatal(err)
	}
	return h
}

func subtree(t *testing.T, r *Repo, ents []treeEnt) plumbing.Hash {
	t.Helper()
	data := encodeTree(ents)
	h := objectHash("tree", data)
	if err := r.w.write(h, "tree", data); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestCorruptManifests(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	r, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pieces := make([]byte, 20)
	info := bt.NewInfo(100, 1<<18, pieces)
	good := encodeManifest(&Entry{Kind: KindFile, Mode: 0o644, Info: info})
	goodDir := encodeManifest(&Entry{Kind: KindDir, Mode: 0o700, Mtime: 5})
	badInfo := "d4:infod6:lengthi100e4:name1:x12:piece lengthi3e6:pieces20:" + strings.Repeat("x", 20) + "e4:modei420ee"
	traversal := "d4:infod6:lengthi100e4:name5:../..12:piece lengthi262144e6:pieces20:" + strings.Repeat("x", 20) + "e4:modei420ee"
	deep := strings.Repeat("l", 100) + strings.Repeat("e", 100)
	sum := sha1.Sum(nil)
	_ = sum
	okdir := subtree(t, r, []treeEnt{
		{markerName, filemode.Regular, blob(t, r, string(goodDir))},
		{"f", filemode.Regular, blob(t, r, string(good))},
	})
	baddir := subtree(t, r, []treeEnt{
		{markerName, filemode.Regular, blob(t, r, "d4:modei-1ee")},
		{"f", filemode.Regular, blob(t, r, string(good))},
	})
	nomarker := subtree(t, r, []treeEnt{
		{"f", filemode.Regular, blob(t, r, string(good))},
	})
	ents := []treeEnt{
		{markerName, filemode.Regular, blob(t, r, string(goodDir))},
		{"good", filemode.Regular, blob(t, r, string(good))},
		{"empty", filemode.Regular, blob(t, r, "d3:gidi0e6:lengthi0e4:modei420ee")},
		{"badbencode", filemode.Regular, blob(t, r, "d3:gid")},
		{"notdict", filemode.Regular, blob(t, r, "i5e")},
		{"wrongtype", filemode.Regular, blob(t, r, "d6:lengthi0e4:mode3:abce")},
		{"negmode", filemode.Regular, blob(t, r, "d6:lengthi0e4:modei-1ee")},
		{"biguid", filemode.Regular, blob(t, r, "d6:lengthi0e3:uidi99999999999ee")},
		{"unsorted", filemode.Regular, blob(t, r, "d4:modei420e6:lengthi0ee")},
		{"leadingzero", filemode.Regular, blob(t, r, "d6:lengthi00ee")},
		{"nolength", filemode.Regular, blob(t, r, "d4:modei420ee")},
		{"nonzerolength", filemode.Regular, blob(t, r, "d6:lengthi5ee")},
		{"badinfo", filemode.Regular, blob(t, r, badInfo)},
		{"traversal", filemode.Regular, blob(t, r, traversal)},
		{"deep", filemode.Regular, blob(t, r, deep)},
		{"xattrlist", filemode.Regular, blob(t, r, "d6:lengthi0e5:xattrli1eee")},
		{"trailing", filemode.Regular, blob(t, r, string(good)+"x")},
		{"missing", filemode.Regular, plumbing.NewHash("1111111111111111111111111111111111111111")},
		{".git", filemode.Regular, blob(t, r, string(good))},
		{".DELUGEFS", filemode.Regular, blob(t, r, string(good))},
		{"a/b", filemode.Regular, blob(t, r, string(good))},
		{"..", filemode.Dir, okdir},
		{"gitlink", filemode.Submodule, plumbing.NewHash("2222222222222222222222222222222222222222")},
		{"longlink", filemode.Symlink, blob(t, r, strings.Repeat("x", MaxTargetLen+1))},
		{"nullink", filemode.Symlink, blob(t, r, "a\x00b")},
		{"oklink", filemode.Symlink, blob(t, r, "good")},
		{"okdir", filemode.Dir, okdir},
		{"baddir", filemode.Dir, baddir},
		{"nomarker", filemode.Dir, nomarker},
		{"treeisblob", filemode.Dir, blob(t, r, "not a tree")},
	}
	writeRaw(t, r, ents)
	r.Close()

	r, err = Open(dir, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Open of a repository with corrupt manifests: %v", err)
	}
	defer r.Close()
	var got []string
	for _, p := range r.Problems() {
		got = append(got, p.Path)
		t.Logf("problem %s", p)
	}
	slices.Sort(got)
	want := []string{"..", ".DELUGEFS", ".git", "a/b", "badbencode", "baddir", "badinfo", "biguid", "deep",
		"gitlink", "leadingzero", "longlink", "missing", "negmode", "nolength", "nonzerolength", "notdict",
		"nullink", "trailing", "traversal", "treeisblob", "unsorted", "wrongtype", "xattrlist"}
	if !slices.Equal(got, want) {
		t.Errorf("problems at %q\nwant %q", got, want)
	}
	s := r.Snapshot()
	var paths []string
	s.Walk(func(p string, e *Entry) bool { paths = append(paths, p); return true })
	wantPaths := []string{"baddir", "baddir/f", "empty", "good", "nomarker", "nomarker/f", "okdir", "okdir/f", "oklink"}
	if !slices.Equal(paths, wantPaths) {
		t.Errorf("loaded %q\nwant %q", paths, wantPaths)
	}
	if e, _ := s.Get("okdir"); e.Mode != 0o700 || e.Mtime != 5 {
		t.Errorf("okdir attrs %+v", e)
	}
	if e, _ := s.Get("baddir"); e.Mode != 0o755 {
		t.Errorf("baddir attrs %+v", e)
	}
	if e, _ := s.Get("good"); e.Hash != info.Hash() || e.Size != 100 {
		t.Errorf("good %+v", e)
	}
	if s.Len() != len(wantPaths) {
		t.Errorf("Len %d", s.Len())
	}
}

func FuzzDecodeManifest(f *testing.F) {
	info := bt.NewInfo(100, 1<<18, make([]byte, 20))
	f.Add(encodeManifest(&Entry{Kind: KindFile, Mode: 0o644, Info: info, Xattrs: map[string][]byte{"user.a": []byte("b")}}))
	f.Add(encodeManifest(&Entry{Kind: KindDir, Mode: 0o755, Mtime: -1}))
	f.Add([]byte("d6:lengthi0ee"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, k := range []Kind{KindFile, KindDir} {
			e, err := decodeManifest(data, k)
			if err != nil {
				continue
			}
			// Round trip: what decodes re-encodes to something that
			// decodes to the same entry.
			c, err := checkEntry(e)
			if err != nil {
				t.Fatalf("decoded entry fails checkEntry: %v", err)
			}
			e2, err := decodeManifest(encodeManifest(c), k)
			if err != nil {
				t.Fatalf("re-encoded manifest: %v", err)
			}
			if e2.Mode != e.Mode || e2.Mtime != e.Mtime || e2.Hash != e.Hash || e2.Size != e.Size || len(e2.Xattrs) != len(e.Xattrs) {
				t.Fatalf("round trip %+v != %+v", e2, e)
			}
		}
	})
}
