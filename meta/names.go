package meta

import (
	"fmt"
	"strings"
)

// markerName is the git name of the entry, present in every directory's
// tree, that holds the directory's own attributes.
const markerName = ".delugefs"

// reserved reports whether a user name must be escaped in git. A name is
// reserved when, after its leading dots, comes a core that git, NTFS or HFS+
// could take for ".git" or one of git's special dotfiles, or that equals the
// marker's:
//
//   - one or more leading dots, then "git", "gitmodules", "gitattributes",
//     "gitignore", "mailmap" (files git fsck checks) or "delugefs", in any
//     ASCII case, possibly with HFS+-ignorable code points inside, trailing
//     spaces or dots, or an NTFS ":stream" suffix;
//   - any number of leading dots, then an NTFS short name of those files
//     ("git~1", "gitmod~1", ...; any case).
//
// The set is closed under prepending a dot, which makes escapeName (one
// extra dot) a bijection onto its image.
func reserved(name string) bool {
	// Fast path (every name of a tree is checked on each commit): an
	// ASCII name is reserved only if it starts with '.' or holds '~'
	// (ignorable characters are not ASCII).
	plain := true
	for i := 0; i < len(name) && plain; i++ {
		c := name[i]
		plain = c < 0x80 && c != '~' && (i > 0 || c != '.')
	}
	if plain {
		return false
	}
	s := stripIgnorable(name)
	core := strings.TrimLeft(s, ".")
	t := strings.ToLower(core) // ASCII letters are all that matter
	if i := strings.IndexByte(t, ':'); i >= 0 {
		t = t[:i]
	}
	t = strings.TrimRight(t, " .")
	if len(core) < len(s) {
		switch t {
		case "git", "gitmodules", "gitattributes", "gitignore", "mailmap", "delugefs":
			return true
		}
	}
	return ntfsShortName(t)
}

// ntfsShortName reports whether t is an 8.3 short name NTFS may give to
// one of git's special files (git's is_ntfs_dot* checks), e.g. "git~1".
func ntfsShortName(t string) bool {
	stem, num, ok := strings.Cut(t, "~")
	if !ok || num == "" || strings.Trim(num, "0123456789") != "" {
		return false
	}
	switch stem {
	case "git", "gitmod", "gi7eba", "gitatt", "gi7d29", "gitign", "gi250a", "mailma", "maba30":
		return true
	}
	return false
}

// stripIgnorable removes the code points HFS+ ignores in names (git's
// is_hfs_dotgit list).
func stripIgnorable(s string) string {
	if !strings.ContainsAny(s, "\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u206a\u206b\u206c\u206d\u206e\u206f\ufeff") {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 0x200c && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x206a && r <= 0x206f, r == 0xfeff:
			return -1
		}
		return r
	}, s)
}

// escapeName maps a user name to its git tree name: reserved names get one
// extra leading '.', every other name is itself. It never yields the
// marker name, nor a name git treats as ".git" or ".gitmodules".
func escapeName(name string) string {
	if reserved(name) {
		return "." + name
	}
	return name
}

// unescapeName maps a git tree name back to the user name. It fails for
// names escapeName never produces (".git", ".delugefs" in another case,
// "git~1", ...) and for "", ".", "..", names holding '/' or NUL, and names
// longer than MaxNameLen. The marker itself is the caller's to handle.
func unescapeName(g string) (string, error) {
	name := g
	if reserved(g) {
		if g[0] != '.' || !reserved(g[1:]) {
			return "", fmt.Errorf("%w: reserved name %q", ErrInvalid, g)
		}
		name = g[1:]
	}
	if err := checkName(name); err != nil {
		return "", err
	}
	return name, nil
}

// checkName validates one path component.
func checkName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("%w: name %q", ErrInvalid, name)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: name of %d bytes is too long", ErrInvalid, len(name))
	case strings.IndexByte(name, '/') >= 0 || strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%w: name %q holds '/' or NUL", ErrInvalid, name)
	}
	return nil
}

// splitPath validates a cleaned relative path and returns its components;
// "" (the root) has none.
func splitPath(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if len(p) > MaxPathLen {
		return nil, fmt.Errorf("%w: path of %d bytes is too long", ErrInvalid, len(p))
	}
	parts := strings.Split(p, "/")
	if len(parts) > MaxDepth {
		return nil, fmt.Errorf("%w: path %q is %d levels deep", ErrInvalid, p, len(parts))
	}
	for _, c := range parts {
		if err := checkName(c); err != nil {
			return nil, fmt.Errorf("path %q: %w", p, err)
		}
	}
	return parts, nil
}

// gitPath maps a filesystem path to its git path (each component escaped).
func gitPath(p string) string {
	if p == "" {
		return ""
	}
	parts := strings.Split(p, "/")
	for i, c := range parts {
		parts[i] = escapeName(c)
	}
	return strings.Join(parts, "/")
}
