package meta

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestEscapeTable(t *testing.T) {
	for _, c := range []struct{ user, git string }{
		{"a", "a"},
		{"git", "git"},
		{".git", "..git"},
		{".GiT", "..GiT"},
		{"..git", "...git"},
		{".delugefs", "..delugefs"},
		{".DELUGEFS", "..DELUGEFS"},
		{".git.", "..git."},
		{".git ", "..git "},
		{"git~1", ".git~1"},
		{".git~1", "..git~1"},
		{".g\u200cit", "..g\u200cit"},
		{".gitmodules", "..gitmodules"},
		{".gitignore", "..gitignore"},
		{"x.git", "x.git"},
		{".gitx", ".gitx"},
		{".hidden", ".hidden"},
	} {
		if got := escapeName(c.user); got != c.git {
			t.Errorf("escapeName(%q) = %q, want %q", c.user, got, c.git)
		}
		if got, err := unescapeName(c.git); err != nil || got != c.user {
			t.Errorf("unescapeName(%q) = %q, %v; want %q", c.git, got, err, c.user)
		}
	}
	for _, g := range []string{".git", ".GIT", ".delugefs", ".Delugefs", "git~1", "GIT~2", ".git.", ".gitmodules", "", ".", "..", "a/b", "a\x00b", strings.Repeat("x", 256)} {
		if got, err := unescapeName(g); err == nil {
			t.Errorf("unescapeName(%q) = %q, want an error", g, got)
		}
	}
	// The longest user name escapes to 256 bytes and comes back.
	long := strings.Repeat(".", 252) + "git"
	if got, err := unescapeName(escapeName(long)); err != nil || got != long {
		t.Errorf("long reserved name: %q %v", got, err)
	}
}

// TestEscapeBijective checks, over random names built from the dangerous
// alphabet, that unescape(escape(n)) == n, that escape never yields a name
// git or the marker treat specially, and that escape is injective.
func TestEscapeBijective(t *testing.T) {
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 1))
	parts := []string{".", ".", "git", "GIT", "delugefs", "DelugeFS", "~1", " ", ":x", "\u200c", "modules", "a", "\xff", "gitmod"}
	seen := map[string]string{}
	for range 200000 {
		var b strings.Builder
		for range 1 + rng.IntN(5) {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		n := b.String()
		if checkName(n) != nil {
			continue
		}
		g := escapeName(n)
		back, err := unescapeName(g)
		if err != nil || back != n {
			t.Fatalf("seed %d: %q -> %q -> %q, %v", seed, n, g, back, err)
		}
		if g == markerName || (reserved(g) && (g[0] != '.' || !reserved(g[1:]))) {
			t.Fatalf("seed %d: %q escapes to special %q", seed, n, g)
		}
		if strings.EqualFold(stripIgnorable(strings.TrimRight(g, " .")), ".git") {
			t.Fatalf("seed %d: %q escapes to %q", seed, n, g)
		}
		if prev, ok := seen[g]; ok && prev != n {
			t.Fatalf("seed %d: %q and %q both escape to %q", seed, prev, n, g)
		}
		seen[g] = n
	}
}

func TestSplitPath(t *testing.T) {
	for _, p := range []string{"/a", "a/", "a//b", "../a", "a/./b", "a/../b", "a\x00", strings.Repeat("a/", 300) + "a"} {
		if _, err := splitPath(p); err == nil {
			t.Errorf("splitPath(%q) accepted", p)
		}
	}
	if parts, err := splitPath("a/ b/\xff"); err != nil || len(parts) != 3 {
		t.Errorf("splitPath: %v %v", parts, err)
	}
}
