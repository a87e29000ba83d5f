package meta

import (
	"fmt"
	"strings"
)

// markerName is the git name of the entry, present in every directory's
// tree, that holds the directory's own attributes.
const markerName = ".delugefs"

// reserved reports whether a user name must be escaped in git: names that
// match ^\.*\.delugefs$ or ^\.*\.git$, ASCII case-insensitively (so the
// marker never collides, and no tree ever holds an entry that git or a
// case-insensitive checkout takes for ".git").
func reserved(name string) bool {
	rest := strings.TrimLeft(name, ".")
	if len(rest) == len(name) {
		return false // no leading dot
	}
	return strings.EqualFold(rest, "delugefs") || strings.EqualFold(rest, "git")
}

// escapeName maps a user name to its git tree name: reserved names get one
// extra leading '.', every other name is itself. The mapping is injective
// and never yields the marker name or ".git" in any case.
func escapeName(name string) string {
	if reserved(name) {
		return "." + name
	}
	return name
}

// unescapeName maps a git tree name back to the user name. It fails for
// names escapeName never produces: the marker (handled by the caller),
// ".git" in any case, ".delugefs" in another case, "", ".", "..", and
// names holding '/' or NUL or longer than MaxNameLen.
func unescapeName(g string) (string, error) {
	if err := checkName(g); err != nil {
		return "", err
	}
	if !reserved(g) {
		return g, nil
	}
	// A reserved git name is an escaped user name only with two or more
	// leading dots: ".git" / ".DelugeFS" themselves are never produced.
	if !strings.HasPrefix(g, "..") {
		return "", fmt.Errorf("%w: reserved name %q", ErrInvalid, g)
	}
	return g[1:], nil
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
