package merge

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	t1 = time.Date(2026, 11, 25, 15, 47, 0, 0, time.UTC)
	t2 = time.Date(2026, 11, 25, 16, 2, 9, 0, time.FixedZone("CET", 3600))
)

const (
	ts1 = "20261125T154700Z"
	ts2 = "20261125T150209Z" // t2 in UTC
)

func hash(n int) Hash {
	var h Hash
	h[0], h[1] = byte(n>>8), byte(n)
	return h
}

// F, S and D are a file, a symlink and a directory marker with content n;
// a greater n wins a conflict.
func F(n int) Leaf { return Leaf{Kind: File, Hash: hash(n), Mode: 0o644} }
func S(n int) Leaf { return Leaf{Kind: Symlink, Hash: hash(n), Mode: 0o777} }
func D(n int) Leaf { return Leaf{Kind: Dir, Hash: hash(n), Mode: 0o755} }

type m = map[string]Leaf

// run merges both ways, checks that they agree and that the result is a
// valid tree, and returns it.
func run(t *testing.T, base, ours, theirs m) Result {
	t.Helper()
	a := Head{Tree: FromMap(ours), Node: "n1", Time: t1}
	b := Head{Tree: FromMap(theirs), Node: "n2", Time: t2}
	r1, err := Trees(FromMap(base), a, b)
	if err != nil {
		t.Fatalf("Trees(base, ours, theirs): %v", err)
	}
	r2, err := Trees(FromMap(base), b, a)
	if err != nil {
		t.Fatalf("Trees(base, theirs, ours): %v", err)
	}
	if !reflect.DeepEqual(r1, r2) {
		t.Fatalf("not symmetric:\nours first:   %v\ntheirs first: %v", r1, r2)
	}
	checkResult(t, r1.Tree)
	return r1
}

// checkResult checks that tr is sorted, valid, and that no file or symlink
// has entries below it.
func checkResult(t *testing.T, tr Tree) {
	t.Helper()
	if err := tr.Check(); err != nil {
		t.Fatalf("result: %v", err)
	}
	for i, e := range tr {
		if e.Leaf.Kind != Dir && i+1 < len(tr) && under(tr[i+1].Path, e.Path) {
			t.Fatalf("result: %v %q has %q below it", e.Leaf.Kind, e.Path, tr[i+1].Path)
		}
	}
}

func TestRules(t *testing.T) {
	c1 := func(p, ext string) string { return p + ".conflict-n1-" + ts1 + ext }
	c2 := func(p, ext string) string { return p + ".conflict-n2-" + ts2 + ext }
	tests := []struct {
		name               string
		base, ours, theirs m
		want               m
		events             []Event
	}{
		{name: "one side modifies",
			base: m{"a": F(1)}, ours: m{"a": F(2)}, theirs: m{"a": F(1)},
			want: m{"a": F(2)}},
		{name: "one side adds",
			base: m{}, ours: m{}, theirs: m{"d": D(1), "d/x": F(1)},
			want: m{"d": D(1), "d/x": F(1)}},
		{name: "one side deletes",
			base: m{"a": F(1), "b": F(2)}, ours: m{"a": F(1), "b": F(2)}, theirs: m{"b": F(2)},
			want: m{"b": F(2)}},
		{name: "one side chmods",
			base: m{"a": F(1)}, ours: m{"a": {File, hash(1), 0o755}}, theirs: m{"a": F(1)},
			want: m{"a": {File, hash(1), 0o755}}},
		{name: "same change",
			base: m{"a": F(1), "b": F(1)}, ours: m{"a": F(2)}, theirs: m{"a": F(2)},
			want: m{"a": F(2)}},
		{name: "add/add same",
			base: m{}, ours: m{"d": D(1), "d/x": F(5)}, theirs: m{"d": D(1), "d/x": F(5)},
			want: m{"d": D(1), "d/x": F(5)}},
		{name: "modify beats delete (theirs deletes)",
			base: m{"a": F(1)}, ours: m{"a": F(2)}, theirs: m{},
			want:   m{"a": F(2)},
			events: []Event{{Kind: ModifyDelete, Path: "a", Winner: "n1", Loser: "n2"}}},
		{name: "modify beats delete (ours deletes)",
			base: m{"a": F(1)}, ours: m{}, theirs: m{"a": F(2)},
			want:   m{"a": F(2)},
			events: []Event{{Kind: ModifyDelete, Path: "a", Winner: "n2", Loser: "n1"}}},
		{name: "replace by symlink beats delete",
			base: m{"a": F(1)}, ours: m{}, theirs: m{"a": S(2)},
			want:   m{"a": S(2)},
			events: []Event{{Kind: ModifyDelete, Path: "a", Winner: "n2", Loser: "n1"}}},
		{name: "dir deleted, file added inside",
			base: m{"d": D(1), "d/x": F(1)}, ours: m{}, theirs: m{"d": D(1), "d/x": F(1), "d/y": F(2)},
			want:   m{"d": D(1), "d/y": F(2)},
			events: []Event{{Kind: DirKept, Path: "d", Winner: "n2", Loser: "n1"}}},
		{name: "dir deleted, file modified deep inside",
			base:   m{"d": D(1), "d/e": D(2), "d/e/x": F(1), "d/z": F(3)},
			ours:   m{"d": D(1), "d/e": D(2), "d/e/x": F(2), "d/z": F(3)},
			theirs: m{},
			want:   m{"d": D(1), "d/e": D(2), "d/e/x": F(2)},
			events: []Event{
				{Kind: DirKept, Path: "d", Winner: "n1", Loser: "n2"},
				{Kind: DirKept, Path: "d/e", Winner: "n1", Loser: "n2"},
				{Kind: ModifyDelete, Path: "d/e/x", Winner: "n1", Loser: "n2"},
			}},
		{name: "dir deleted, its marker changed",
			base: m{"d": D(1), "d/x": F(1)}, ours: m{}, theirs: m{"d": D(2), "d/x": F(1)},
			want:   m{"d": D(2)},
			events: []Event{{Kind: ModifyDelete, Path: "d", Winner: "n2", Loser: "n1"}}},
		{name: "implicit dir deleted, file added inside",
			base: m{"d/x": F(1)}, ours: m{}, theirs: m{"d/x": F(1), "d/y": F(2)},
			want: m{"d/y": F(2)}},
		{name: "add/add different",
			base: m{}, ours: m{"a.txt": F(1)}, theirs: m{"a.txt": F(2)},
			want:   m{"a.txt": F(2), c1("a", ".txt"): F(1)},
			events: []Event{{Kind: Conflict, Path: "a.txt", Copy: c1("a", ".txt"), Winner: "n2", Loser: "n1"}}},
		{name: "modify/modify",
			base: m{"d": D(1), "d/a": F(1)}, ours: m{"d": D(1), "d/a": F(3)}, theirs: m{"d": D(1), "d/a": F(2)},
			want:   m{"d": D(1), "d/a": F(3), c2("d/a", ""): F(2)},
			events: []Event{{Kind: Conflict, Path: "d/a", Copy: c2("d/a", ""), Winner: "n1", Loser: "n2"}}},
		{name: "same content, different modes",
			base: m{"a": F(1)}, ours: m{"a": {File, hash(1), 0o600}}, theirs: m{"a": {File, hash(1), 0o755}},
			want:   m{"a": {File, hash(1), 0o755}, c1("a", ""): {File, hash(1), 0o600}},
			events: []Event{{Kind: Conflict, Path: "a", Copy: c1("a", ""), Winner: "n2", Loser: "n1"}}},
		{name: "dir attrs both changed",
			base: m{"d": D(1)}, ours: m{"d": D(3)}, theirs: m{"d": D(2)},
			want:   m{"d": D(3)},
			events: []Event{{Kind: DirAttrs, Path: "d", Winner: "n1", Loser: "n2"}}},
		{name: "mkdir both, different attrs",
			base: m{}, ours: m{"d": D(2), "d/x": F(1)}, theirs: m{"d": D(3), "d/y": F(2)},
			want:   m{"d": D(3), "d/x": F(1), "d/y": F(2)},
			events: []Event{{Kind: DirAttrs, Path: "d", Winner: "n2", Loser: "n1"}}},
		{name: "file/dir clash (added)",
			base: m{}, ours: m{"p": F(9)}, theirs: m{"p": D(1), "p/x": F(2)},
			want:   m{"p": D(1), "p/x": F(2), c1("p", ""): F(9)},
			events: []Event{{Kind: FileDir, Path: "p", Copy: c1("p", ""), Winner: "n2", Loser: "n1"}}},
		{name: "file/dir clash, implicit dir",
			base: m{}, ours: m{"p.mkv": F(9)}, theirs: m{"p.mkv/x": F(2)},
			want:   m{"p.mkv/x": F(2), c1("p", ".mkv"): F(9)},
			events: []Event{{Kind: FileDir, Path: "p.mkv", Copy: c1("p", ".mkv"), Winner: "n2", Loser: "n1"}}},
		{name: "dir replaced by file vs modify inside",
			base: m{"p": D(1), "p/x": F(1)}, ours: m{"p": F(9)}, theirs: m{"p": D(1), "p/x": F(2)},
			want: m{"p": D(1), "p/x": F(2), c1("p", ""): F(9)},
			events: []Event{
				{Kind: FileDir, Path: "p", Copy: c1("p", ""), Winner: "n2", Loser: "n1"},
				{Kind: ModifyDelete, Path: "p/x", Winner: "n2", Loser: "n1"},
			}},
		{name: "dir replaced by file vs add inside",
			base: m{"p": D(1)}, ours: m{"p": F(9)}, theirs: m{"p": D(1), "p/x": F(2)},
			want:   m{"p": D(1), "p/x": F(2), c1("p", ""): F(9)},
			events: []Event{{Kind: FileDir, Path: "p", Copy: c1("p", ""), Winner: "n2", Loser: "n1"}}},
		{name: "file replaced by dir vs modify",
			base: m{"p": F(1)}, ours: m{"p": D(1), "p/x": F(2)}, theirs: m{"p": F(3)},
			want:   m{"p": D(1), "p/x": F(2), c2("p", ""): F(3)},
			events: []Event{{Kind: FileDir, Path: "p", Copy: c2("p", ""), Winner: "n1", Loser: "n2"}}},
		{name: "file replaced by dir vs delete",
			base: m{"p": F(1)}, ours: m{"p": D(1), "p/x": F(2)}, theirs: m{},
			want:   m{"p": D(1), "p/x": F(2)},
			events: []Event{{Kind: ModifyDelete, Path: "p", Winner: "n1", Loser: "n2"}}},
		{name: "symlink vs file",
			base: m{}, ours: m{"l": S(1)}, theirs: m{"l": F(2)},
			want:   m{"l": F(2), c1("l", ""): S(1)},
			events: []Event{{Kind: Conflict, Path: "l", Copy: c1("l", ""), Winner: "n2", Loser: "n1"}}},
		{name: "symlink vs dir",
			base: m{}, ours: m{"l": S(7)}, theirs: m{"l": D(2)},
			want:   m{"l": D(2), c1("l", ""): S(7)},
			events: []Event{{Kind: FileDir, Path: "l", Copy: c1("l", ""), Winner: "n2", Loser: "n1"}}},
		{name: "nested conflicts",
			base:   m{"a": D(1), "a/b": D(2), "a/b/c": F(1), "a/x.txt": F(2)},
			ours:   m{"a": F(5), "q": D(3), "q/r": D(4), "q/r/s": F(6)},
			theirs: m{"a": D(1), "a/b": F(6), "a/x.txt": F(8), "q": D(3), "q/r": D(4), "q/r/s": F(7)},
			want: m{"a": D(1), c1("a", ""): F(5), "a/b": F(6), "a/x.txt": F(8),
				"q": D(3), "q/r": D(4), "q/r/s": F(7), c1("q/r/s", ""): F(6)},
			events: []Event{
				{Kind: FileDir, Path: "a", Copy: c1("a", ""), Winner: "n2", Loser: "n1"},
				{Kind: ModifyDelete, Path: "a/b", Winner: "n2", Loser: "n1"},
				{Kind: ModifyDelete, Path: "a/x.txt", Winner: "n2", Loser: "n1"},
				{Kind: Conflict, Path: "q/r/s", Copy: c1("q/r/s", ""), Winner: "n2", Loser: "n1"},
			}},
		{name: "conflict name taken",
			base: m{}, ours: m{"a.txt": F(1)}, theirs: m{"a.txt": F(2), c1("a", ".txt"): F(3)},
			want:   m{"a.txt": F(2), c1("a", ".txt"): F(3), "a.conflict-n1-" + ts1 + "-2.txt": F(1)},
			events: []Event{{Kind: Conflict, Path: "a.txt", Copy: "a.conflict-n1-" + ts1 + "-2.txt", Winner: "n2", Loser: "n1"}}},
		{name: "conflict name taken by a directory, twice",
			base: m{}, ours: m{"a": F(1), c1("a", "") + "/x": F(3)},
			theirs: m{"a": F(2), "a.conflict-n1-" + ts1 + "-2": D(1)},
			want: m{"a": F(2), c1("a", "") + "/x": F(3), "a.conflict-n1-" + ts1 + "-2": D(1),
				"a.conflict-n1-" + ts1 + "-3": F(1)},
			events: []Event{{Kind: Conflict, Path: "a", Copy: "a.conflict-n1-" + ts1 + "-3", Winner: "n2", Loser: "n1"}}},
		{name: "rename vs modify",
			base: m{"a": F(1)}, ours: m{"b": F(1)}, theirs: m{"a": F(2)},
			want:   m{"a": F(2), "b": F(1)},
			events: []Event{{Kind: ModifyDelete, Path: "a", Winner: "n2", Loser: "n1"}}},
		{name: "rename both ways",
			base: m{"a": F(1)}, ours: m{"b": F(1)}, theirs: m{"c": F(1)},
			want: m{"b": F(1), "c": F(1)}},
		{name: "rename dir vs add inside",
			base: m{"d": D(1), "d/x": F(1)}, ours: m{"e": D(1), "e/x": F(1)}, theirs: m{"d": D(1), "d/x": F(1), "d/y": F(2)},
			want:   m{"d": D(1), "d/y": F(2), "e": D(1), "e/x": F(1)},
			events: []Event{{Kind: DirKept, Path: "d", Winner: "n2", Loser: "n1"}}},
		{name: "root marker",
			base: m{"": D(1)}, ours: m{"": D(1), "a": F(1)}, theirs: m{"": D(2)},
			want: m{"": D(2), "a": F(1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.base, tc.ours, tc.theirs)
			if got := r.Tree.Map(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("tree:\ngot  %v\nwant %v", fmtMap(got), fmtMap(tc.want))
			}
			if !reflect.DeepEqual(r.Events, tc.events) {
				t.Errorf("events:\ngot  %v\nwant %v", r.Events, tc.events)
			}
		})
	}
}

func fmtMap(mm m) string {
	t := FromMap(mm)
	var b strings.Builder
	for _, e := range t {
		fmt.Fprintf(&b, "\n\t%q %v %d", e.Path, e.Leaf.Kind, int(e.Leaf.Hash[0])<<8|int(e.Leaf.Hash[1]))
	}
	return b.String()
}

func TestConflictName(t *testing.T) {
	long := strings.Repeat("é", 127) + ".txt" // 254 + 4 bytes
	tests := []struct {
		path string
		n    int
		want string
	}{
		{"film.mkv", 1, "film.conflict-n1-" + ts1 + ".mkv"},
		{"d/e/film.mkv", 2, "d/e/film.conflict-n1-" + ts1 + "-2.mkv"},
		{"a.tar.gz", 1, "a.tar.conflict-n1-" + ts1 + ".gz"},
		{"README", 1, "README.conflict-n1-" + ts1},
		{".bashrc", 1, ".bashrc.conflict-n1-" + ts1},
		{"d.x/a.", 1, "d.x/a..conflict-n1-" + ts1},
		{"notes.an-extension-too-long", 1, "notes.an-extension-too-long.conflict-n1-" + ts1},
		{long, 1, strings.Repeat("é", 111) + ".conflict-n1-" + ts1 + ".txt"},
	}
	for _, tc := range tests {
		got := ConflictName(tc.path, "n1", t1, tc.n)
		if got != tc.want {
			t.Errorf("ConflictName(%q, %d) = %q, want %q", tc.path, tc.n, got, tc.want)
		}
		name := got[strings.LastIndexByte(got, '/')+1:]
		if len(name) > MaxName || !utf8Valid(name) {
			t.Errorf("ConflictName(%q) = %q: %d bytes or invalid UTF-8", tc.path, got, len(name))
		}
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func TestCompare(t *testing.T) {
	paths := []string{"", "a", "a/b", "a/b/c", "a/b-c", "a/bc", "a b", "a-b", "a.txt", "a0", "b", "b/a"}
	for i := range paths {
		for j := range paths {
			if got, want := Compare(paths[i], paths[j]), cmpInt(i, j); got != want {
				t.Errorf("Compare(%q, %q) = %d, want %d", paths[i], paths[j], got, want)
			}
		}
	}
	// Longer common prefixes go through the eight-byte fast path.
	x, y := "0123456789abcdef/x", "0123456789abcdef-x"
	if Compare(x, y) >= 0 || Compare(y, x) <= 0 {
		t.Errorf("Compare(%q, %q) wrong", x, y)
	}
}

func cmpInt(i, j int) int {
	switch {
	case i < j:
		return -1
	case i > j:
		return 1
	}
	return 0
}

func TestInvalid(t *testing.T) {
	ok := Tree{{"a", F(1)}}
	good := Head{Tree: ok, Node: "n1", Time: t1}
	tests := []struct {
		name string
		base Tree
		a, b Head
	}{
		{"unsorted", Tree{{"b", F(1)}, {"a", F(1)}}, good, good},
		{"repeated", ok, Head{Tree: Tree{{"a", F(1)}, {"a", F(2)}}, Node: "n1"}, good},
		{"component order", ok, good, Head{Tree: Tree{{"a-b", F(1)}, {"a/b", F(1)}}, Node: "n2"}},
		{"leading slash", Tree{{"/a", F(1)}}, good, good},
		{"trailing slash", ok, Head{Tree: Tree{{"a/", F(1)}}, Node: "n2"}, good},
		{"empty component", ok, good, Head{Tree: Tree{{"a//b", F(1)}}, Node: "n2"}},
		{"NUL", ok, good, Head{Tree: Tree{{"a\x00", F(1)}}, Node: "n2"}},
		{"file at root", Tree{{"", F(1)}}, good, good},
		{"no kind", Tree{{"a", Leaf{}}}, good, good},
		{"empty node", ok, Head{Tree: ok}, good},
		{"slash in node", ok, good, Head{Tree: ok, Node: "a/b"}},
		{"long node", ok, good, Head{Tree: ok, Node: strings.Repeat("n", 65)}},
	}
	for _, tc := range tests {
		_, err := Trees(tc.base, tc.a, tc.b)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", tc.name, err)
		}
	}
}

// randTree returns a random valid tree over a small set of names, so that
// random trees share many paths.
func randTree(r *rand.Rand, from m, ops int) m {
	names := []string{"a", "b", "a.txt", "a-b", "c"}
	out := make(m, len(from))
	for p, l := range from {
		out[p] = l
	}
	randPath := func() string {
		parts := make([]string, 1+r.IntN(3))
		for i := range parts {
			parts[i] = names[r.IntN(len(names))]
		}
		return strings.Join(parts, "/")
	}
	for range ops {
		p := randPath()
		switch r.IntN(6) {
		case 0, 1:
			out[p] = F(1 + r.IntN(4))
		case 2:
			out[p] = S(1 + r.IntN(2))
		case 3:
			out[p] = D(1 + r.IntN(2))
		case 4:
			delete(out, p)
		case 5: // rm -r
			delete(out, p)
			for q := range out {
				if under(q, p) {
					delete(out, q)
				}
			}
		}
	}
	// A file or symlink cannot have anything below it.
	for p, l := range out {
		if l.Kind != Dir {
			for q := range out {
				if under(q, p) {
					delete(out, q)
				}
			}
		}
	}
	return out
}

// TestRandomProperties merges random trees and checks: symmetry, a valid
// result, that merging with an unchanged side or with itself gives the
// other side, and that no version of a file a side changed is lost.
func TestRandomProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	kinds := map[EventKind]int{}
	defer func() { t.Logf("events seen: %v", kinds) }()
	for iter := range 3000 {
		base := randTree(r, nil, 12)
		ours := randTree(r, base, r.IntN(8))
		theirs := randTree(r, base, r.IntN(8))
		res := run(t, base, ours, theirs)
		for _, e := range res.Events {
			kinds[e.Kind]++
		}

		// Every file or symlink a side has that is not the base's version at
		// that path survives somewhere (a modification beats a delete,
		// conflicts keep both, renames are adds).
		have := map[Leaf]bool{}
		for _, e := range res.Tree {
			have[e.Leaf] = true
		}
		for _, side := range []m{ours, theirs} {
			for p, l := range side {
				if l.Kind == Dir {
					continue
				}
				if bl, ok := base[p]; ok && bl == l {
					continue
				}
				if !have[l] {
					t.Fatalf("iteration %d: %q %v lost\nbase %v\nours %v\ntheirs %v\nresult %v",
						iter, p, l, fmtMap(base), fmtMap(ours), fmtMap(theirs), fmtMap(res.Tree.Map()))
				}
			}
		}

		for _, tc := range []struct {
			name string
			a, b m
		}{{"unchanged side", ours, base}, {"same side", ours, ours}} {
			res := run(t, base, tc.a, tc.b)
			if !slices.Equal(res.Tree, FromMap(tc.a)) || len(res.Events) != 0 {
				t.Fatalf("iteration %d: %s: got %v events %v, want %v", iter, tc.name,
					fmtMap(res.Tree.Map()), res.Events, fmtMap(tc.a))
			}
		}
	}
}
