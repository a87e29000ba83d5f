package bt

import (
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/zeebo/bencode"
)

// MaxMetaInfoSize bounds a .torrent file ParseMetaInfo accepts.
const MaxMetaInfoSize = 100 << 20

// ErrMetaInfo is wrapped by ParseMetaInfo's errors about the outer dictionary.
var ErrMetaInfo = errors.New("bt: invalid metainfo")

// MetaInfo is a .torrent file: the info dictionary plus the keys around it.
// DelugeFS manifests are MetaInfo whose Extra holds the file's attributes.
type MetaInfo struct {
	Info      *Info
	Announce  string
	Comment   string
	CreatedBy string
	// CreationDate is in seconds since the epoch; 0 means absent.
	CreationDate int64
	// Extra holds every other top-level key with its raw bencoded value.
	Extra map[string]bencode.RawMessage
}

// ParseMetaInfo parses and checks a .torrent file.
func ParseMetaInfo(data []byte) (*MetaInfo, error) {
	if len(data) > MaxMetaInfoSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMetaInfo, len(data), MaxMetaInfoSize)
	}
	if err := CheckBencode(data, MaxDepth); err != nil {
		return nil, fmt.Errorf("parse metainfo: %w", err)
	}
	if data[0] != 'd' {
		return nil, fmt.Errorf("%w: not a dictionary", ErrMetaInfo)
	}
	var top map[string]bencode.RawMessage
	if err := bencode.DecodeBytes(data, &top); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMetaInfo, err)
	}
	raw, ok := top["info"]
	if !ok {
		return nil, fmt.Errorf("%w: no info dictionary", ErrMetaInfo)
	}
	info, err := ParseInfo(raw)
	if err != nil {
		return nil, err
	}
	m := &MetaInfo{Info: info}
	for k, v := range top {
		var err error
		switch k {
		case "info":
		case "announce":
			err = bencode.DecodeBytes(v, &m.Announce)
		case "comment":
			err = bencode.DecodeBytes(v, &m.Comment)
		case "created by":
			err = bencode.DecodeBytes(v, &m.CreatedBy)
		case "creation date":
			err = bencode.DecodeBytes(v, &m.CreationDate)
		default:
			if m.Extra == nil {
				m.Extra = make(map[string]bencode.RawMessage)
			}
			m.Extra[k] = v
		}
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %v", ErrMetaInfo, k, err)
		}
	}
	return m, nil
}

// Bencode returns the .torrent file: keys sorted, the info dictionary as its
// exact bytes so the info-hash is kept.
func (m *MetaInfo) Bencode() []byte {
	fields := make(map[string][]byte, len(m.Extra)+5)
	for k, v := range m.Extra {
		fields[k] = v
	}
	fields["info"] = m.Info.Bencode()
	if m.Announce != "" {
		fields["announce"] = appendString(nil, m.Announce)
	}
	if m.Comment != "" {
		fields["comment"] = appendString(nil, m.Comment)
	}
	if m.CreatedBy != "" {
		fields["created by"] = appendString(nil, m.CreatedBy)
	}
	if m.CreationDate != 0 {
		fields["creation date"] = strconv.AppendInt([]byte("i"), m.CreationDate, 10)
		fields["creation date"] = append(fields["creation date"], 'e')
	}
	return EncodeDict(fields)
}

// EncodeDict bencodes a dictionary whose values are already bencoded, with
// its keys in the sorted order bencode requires.
func EncodeDict(fields map[string][]byte) []byte {
	keys := make([]string, 0, len(fields))
	size := 2
	for k, v := range fields {
		keys = append(keys, k)
		size += len(k) + len(v) + 12
	}
	sort.Strings(keys)
	b := make([]byte, 0, size)
	b = append(b, 'd')
	for _, k := range keys {
		b = appendString(b, k)
		b = append(b, fields[k]...)
	}
	return append(b, 'e')
}
