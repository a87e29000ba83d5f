package meta

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/zeebo/bencode"

	"github.com/delugefs/delugefs/bt"
)

// A manifest is the git blob of a regular file: a bencoded dictionary
//
//	gid    int                      owner group
//	info   dict                     the torrent info dictionary (absent for empty files)
//	length int                      0, present only for empty files (no info)
//	mode   int                      permission bits 07777
//	mtime  int                      unix nanoseconds
//	uid    int                      owner
//	xattr  dict of string -> string user xattrs (absent when there are none)
//
// with info at the top level, so the blob is a torrent file a stock client
// accepts. A directory marker (.delugefs) holds gid, mode, mtime, uid and
// xattr of its directory in the same form. Unknown keys are ignored.

// maxBencodeDepth bounds nesting in manifests (info holds no nesting at all
// in a v1 single-file torrent; xattr is one level).
const maxBencodeDepth = 8

// encodeManifest returns the manifest of a file entry or the marker of a
// directory entry (keys in sorted order, as bencode requires).
func encodeManifest(e *Entry) []byte {
	var b bytes.Buffer
	b.WriteByte('d')
	benInt(&b, "gid", int64(e.GID))
	if e.Kind == KindFile {
		if e.Info != nil {
			benKey(&b, "info")
			b.Write(e.Info.Bencode())
		} else {
			benInt(&b, "length", 0)
		}
	}
	benInt(&b, "mode", int64(e.Mode))
	benInt(&b, "mtime", e.Mtime)
	benInt(&b, "uid", int64(e.UID))
	if len(e.Xattrs) > 0 {
		benKey(&b, "xattr")
		b.WriteByte('d')
		keys := make([]string, 0, len(e.Xattrs))
		for k := range e.Xattrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			benKey(&b, k)
			benKey(&b, string(e.Xattrs[k]))
		}
		b.WriteByte('e')
	}
	b.WriteByte('e')
	return b.Bytes()
}

func benKey(b *bytes.Buffer, s string) {
	b.WriteString(strconv.Itoa(len(s)))
	b.WriteByte(':')
	b.WriteString(s)
}

func benInt(b *bytes.Buffer, k string, v int64) {
	benKey(b, k)
	b.WriteByte('i')
	b.WriteString(strconv.FormatInt(v, 10))
	b.WriteByte('e')
}

// decodeManifest parses an untrusted manifest (kind KindFile) or directory
// marker (kind KindDir) into an entry. The bencoding is checked first
// (canonical, bounded), then the top-level dictionary is walked in place.
func decodeManifest(data []byte, kind Kind) (*Entry, error) {
	if len(data) > MaxManifestLen {
		return nil, fmt.Errorf("manifest of %d bytes exceeds %d", len(data), MaxManifestLen)
	}
	if err := checkBencode(data); err != nil {
		return nil, err
	}
	if len(data) == 0 || data[0] != 'd' {
		return nil, errors.New("manifest is not a dictionary")
	}
	e := &Entry{Kind: kind, Mode: 0644}
	if kind == KindDir {
		e.Mode = 0755
	}
	var info, length bencode.RawMessage
	// Keys are sorted and distinct (checkBencode): each appears once.
	for off := 1; data[off] != 'e'; {
		key, next, err := scanString(data, off)
		if err != nil {
			return nil, err
		}
		end, err := scanBencode(data, next, 1)
		if err != nil {
			return nil, err
		}
		raw := bencode.RawMessage(data[next:end])
		off = end
		switch string(key) {
		case "gid":
			if e.GID, err = u32Value(raw, "gid"); err != nil {
				return nil, err
			}
		case "uid":
			if e.UID, err = u32Value(raw, "uid"); err != nil {
				return nil, err
			}
		case "mode":
			m, err := intValue(raw, "mode")
			if err != nil {
				return nil, err
			}
			if m < 0 || m&^07777 != 0 {
				return nil, fmt.Errorf("manifest mode %#o out of range", m)
			}
			e.Mode = uint32(m)
		case "mtime":
			if e.Mtime, err = intValue(raw, "mtime"); err != nil {
				return nil, err
			}
		case "xattr":
			if e.Xattrs, err = decodeXattrs(raw); err != nil {
				return nil, err
			}
		case "info":
			info = raw
		case "length":
			length = raw
		}
	}
	if kind == KindDir {
		return e, nil
	}
	if info == nil {
		if length == nil {
			return nil, errors.New("manifest has neither info nor length")
		}
		n, err := intValue(length, "length")
		if err != nil {
			return nil, err
		}
		if n != 0 {
			return nil, fmt.Errorf("manifest without info has length %d", n)
		}
		return e, nil
	}
	parsed, err := bt.ParseInfo(info)
	if err != nil {
		return nil, fmt.Errorf("manifest info: %w", err)
	}
	if parsed.Length <= 0 {
		return nil, fmt.Errorf("manifest info length %d", parsed.Length)
	}
	if !bytes.Equal(parsed.Bencode(), info) {
		// The info-hash must be the hash of the bytes in git; a
		// non-canonical info would change hash when re-encoded.
		return nil, errors.New("manifest info is not in canonical form")
	}
	e.Info, e.Size, e.Hash = parsed, parsed.Length, parsed.Hash()
	return e, nil
}

// decodeXattrs parses the xattr dictionary (string values only) of a
// checked bencoding.
func decodeXattrs(raw []byte) (map[string][]byte, error) {
	if len(raw) == 0 || raw[0] != 'd' {
		return nil, errors.New("manifest xattr is not a dictionary")
	}
	var x map[string][]byte
	for off := 1; raw[off] != 'e'; {
		key, next, err := scanString(raw, off)
		if err != nil {
			return nil, fmt.Errorf("manifest xattr: %w", err)
		}
		if raw[next] < '0' || raw[next] > '9' {
			return nil, fmt.Errorf("manifest xattr %q is not a string", key)
		}
		val, end, err := scanString(raw, next)
		if err != nil {
			return nil, fmt.Errorf("manifest xattr: %w", err)
		}
		if x == nil {
			x = make(map[string][]byte)
		}
		x[string(key)] = bytes.Clone(val)
		off = end
	}
	if len(x) == 0 {
		return nil, nil
	}
	if err := checkXattrs(x); err != nil {
		return nil, fmt.Errorf("manifest xattr: %w", err)
	}
	return x, nil
}

func intValue(raw bencode.RawMessage, name string) (int64, error) {
	if len(raw) == 0 || raw[0] != 'i' {
		return 0, fmt.Errorf("manifest %s is not an integer", name)
	}
	n, err := strconv.ParseInt(string(raw[1:len(raw)-1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("manifest %s: %w", name, err)
	}
	return n, nil
}

func u32Value(raw bencode.RawMessage, name string) (uint32, error) {
	n, err := intValue(raw, name)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > math.MaxUint32 {
		return 0, fmt.Errorf("manifest %s %d out of range", name, n)
	}
	return uint32(n), nil
}

// checkBencode verifies that data is exactly one well-formed bencoded value
// in canonical form (no leading zeros, dictionary keys strictly sorted),
// nested at most maxBencodeDepth deep, before any decoder sees it.
func checkBencode(data []byte) error {
	n, err := scanBencode(data, 0, 0)
	if err != nil {
		return fmt.Errorf("bencode: %w", err)
	}
	if n != len(data) {
		return fmt.Errorf("bencode: %d trailing bytes", len(data)-n)
	}
	return nil
}

var errTruncated = errors.New("truncated")

// scanBencode returns the offset just past the value starting at off.
func scanBencode(data []byte, off, depth int) (int, error) {
	if off >= len(data) {
		return 0, errTruncated
	}
	switch c := data[off]; {
	case c == 'i':
		end := bytes.IndexByte(data[off+1:], 'e')
		if end < 0 {
			return 0, errTruncated
		}
		digits := data[off+1 : off+1+end]
		if err := canonicalInt(digits); err != nil {
			return 0, fmt.Errorf("integer at %d: %w", off, err)
		}
		return off + end + 2, nil
	case c >= '0' && c <= '9':
		_, next, err := scanString(data, off)
		return next, err
	case c == 'l' || c == 'd':
		if depth >= maxBencodeDepth {
			return 0, fmt.Errorf("nested deeper than %d at %d", maxBencodeDepth, off)
		}
		off++
		var prev []byte
		first := true
		for {
			if off >= len(data) {
				return 0, errTruncated
			}
			if data[off] == 'e' {
				return off + 1, nil
			}
			if c == 'd' {
				key, next, err := scanString(data, off)
				if err != nil {
					return 0, fmt.Errorf("dictionary key at %d: %w", off, err)
				}
				if !first && bytes.Compare(prev, key) >= 0 {
					return 0, fmt.Errorf("dictionary key %q at %d out of order", key, off)
				}
				prev, first, off = key, false, next
			}
			next, err := scanBencode(data, off, depth+1)
			if err != nil {
				return 0, err
			}
			off = next
		}
	default:
		return 0, fmt.Errorf("unexpected byte %q at %d", c, off)
	}
}

func scanString(data []byte, off int) ([]byte, int, error) {
	colon := bytes.IndexByte(data[off:], ':')
	if colon < 0 {
		return nil, 0, errTruncated
	}
	digits := data[off : off+colon]
	if len(digits) == 0 || len(digits) > 10 || (digits[0] == '0' && len(digits) > 1) {
		return nil, 0, fmt.Errorf("bad string length %q at %d", digits, off)
	}
	n := 0
	for _, d := range digits {
		if d < '0' || d > '9' {
			return nil, 0, fmt.Errorf("bad string length %q at %d", digits, off)
		}
		n = n*10 + int(d-'0')
	}
	start := off + colon + 1
	if n > len(data)-start {
		return nil, 0, errTruncated
	}
	return data[start : start+n], start + n, nil
}

func canonicalInt(d []byte) error {
	s := d
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
		if len(s) > 0 && s[0] == '0' {
			return errors.New("negative zero or leading zero")
		}
	}
	if len(s) == 0 || len(s) > 19 || (s[0] == '0' && len(s) > 1) {
		return fmt.Errorf("bad integer %q", d)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return fmt.Errorf("bad integer %q", d)
		}
	}
	if _, err := strconv.ParseInt(string(d), 10, 64); err != nil {
		return fmt.Errorf("integer %q: %w", d, err)
	}
	return nil
}
