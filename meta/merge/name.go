package merge

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// TimeLayout is how a side's time appears in conflict names: compact UTC
// to the second, e.g. 20261125T154700Z.
const TimeLayout = "20060102T150405Z"

// MaxName is the longest name, in bytes, a conflict copy is given (the
// limit of meta and of most local filesystems). Longer names are made to
// fit by shortening the part before the suffix.
const MaxName = 255

// maxNode bounds a node id so that every conflict suffix fits in MaxName.
const maxNode = 64

// maxExt is the longest extension kept at the end of a conflict name;
// anything longer after the last dot is not taken for an extension.
const maxExt = 16

// ConflictName returns the name under which the losing version of the
// entry at path p is kept: in the same directory,
//
//	stem.conflict-<node>-<time>.ext
//
// where ext is the part of the last component from its last dot on (kept
// last so that the copy still opens with the same application, as
// Syncthing's name.sync-conflict-<date>-<time>-<by>.ext does), stem the
// rest, node the losing side's node id and time its time in TimeLayout.
// A name with no extension ("README", ".bashrc", "a.", an extension over 16
// bytes) gets the suffix at its end. A counter n > 1 is added as "-n" after
// the time when the name is taken. The stem is cut, on a UTF-8 boundary,
// so that the name fits in MaxName bytes.
func ConflictName(p, node string, t time.Time, n int) string {
	dir, name := "", p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		dir, name = p[:i+1], p[i+1:]
	}
	stem, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 && i < len(name)-1 && len(name)-i <= maxExt {
		stem, ext = name[:i], name[i:]
	}
	suffix := ".conflict-" + node + "-" + t.UTC().Format(TimeLayout)
	if n > 1 {
		suffix += "-" + strconv.Itoa(n)
	}
	suffix += ext
	if room := MaxName - len(suffix); len(stem) > room {
		room = max(room, 0)
		for room > 0 && !utf8.RuneStart(stem[room]) {
			room--
		}
		stem = stem[:room]
	}
	return dir + stem + suffix
}
