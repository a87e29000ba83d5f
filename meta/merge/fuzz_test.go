package merge

import (
	"reflect"
	"strings"
	"testing"
)

// decodeTrees turns fuzz input into three trees over a small set of names:
// each entry is three bytes (tree, path, leaf). Files and symlinks with
// entries below them are dropped, as randTree does.
func decodeTrees(data []byte) (base, ours, theirs m) {
	names := []string{"a", "b", "a.txt", "a-b"}
	trees := [3]m{{}, {}, {}}
	for ; len(data) >= 3; data = data[3:] {
		t := trees[int(data[0])%3]
		x := int(data[1])
		parts := []string{names[x%4]}
		for x /= 4; x > 0 && len(parts) < 3; x /= 5 {
			if x%5 == 4 {
				break
			}
			parts = append(parts, names[x%5])
		}
		p := strings.Join(parts, "/")
		switch v := data[2]; v % 4 {
		case 0:
			delete(t, p)
		case 1:
			t[p] = F(int(v / 4 % 4))
		case 2:
			t[p] = S(int(v / 4 % 2))
		case 3:
			t[p] = D(int(v / 4 % 2))
		}
	}
	for _, t := range trees {
		for p, l := range t {
			if l.Kind != Dir {
				for q := range t {
					if under(q, p) {
						delete(t, q)
					}
				}
			}
		}
	}
	return trees[0], trees[1], trees[2]
}

// FuzzTrees checks, on trees made from the input, that the merge is
// symmetric, returns a valid tree and agrees with the naive reference.
func FuzzTrees(f *testing.F) {
	f.Add([]byte{0, 0, 1, 1, 0, 2, 2, 0, 5})
	f.Add([]byte{0, 4, 3, 0, 5, 1, 1, 4, 0, 1, 0, 1, 2, 1, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		base, ours, theirs := decodeTrees(data)
		res := run(t, base, ours, theirs)
		a := Head{Tree: FromMap(ours), Node: "n1", Time: t1}
		b := Head{Tree: FromMap(theirs), Node: "n2", Time: t2}
		want := naive(base, ours, theirs, &a, &b)
		if len(want.Events) == 0 {
			want.Events = nil
		}
		if !reflect.DeepEqual(res, want) {
			t.Fatalf("differs from the naive merge:\ngot  %v %v\nwant %v %v",
				fmtMap(res.Tree.Map()), res.Events, fmtMap(want.Tree.Map()), want.Events)
		}
	})
}
