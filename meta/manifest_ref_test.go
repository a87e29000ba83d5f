package meta

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/zeebo/bencode"

	"github.com/delugefs/delugefs/bt"
)

// decodeManifestRef is decodeManifest as it was, through the bencode library: the
// reference FuzzDecodeManifestSame compares the in-place walk with.
func decodeManifestRef(data []byte, kind Kind) (*Entry, error) {
	if len(data) > MaxManifestLen {
		return nil, fmt.Errorf("manifest of %d bytes exceeds %d", len(data), MaxManifestLen)
	}
	if err := checkBencode(data); err != nil {
		return nil, err
	}
	if len(data) == 0 || data[0] != 'd' {
		return nil, errors.New("manifest is not a dictionary")
	}
	var top map[string]bencode.RawMessage
	if err := bencode.DecodeBytes(data, &top); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	e := &Entry{Kind: kind, Mode: 0644}
	if kind == KindDir {
		e.Mode = 0755
	}
	var err error
	if e.GID, err = u32FieldRef(top, "gid"); err != nil {
		return nil, err
	}
	if e.UID, err = u32FieldRef(top, "uid"); err != nil {
		return nil, err
	}
	if raw, ok := top["mode"]; ok {
		m, err := intValue(raw, "mode")
		if err != nil {
			return nil, err
		}
		if m < 0 || m&^07777 != 0 {
			return nil, fmt.Errorf("manifest mode %#o out of range", m)
		}
		e.Mode = uint32(m)
	}
	if raw, ok := top["mtime"]; ok {
		if e.Mtime, err = intValue(raw, "mtime"); err != nil {
			return nil, err
		}
	}
	if raw, ok := top["xattr"]; ok {
		var x map[string]string
		if len(raw) == 0 || raw[0] != 'd' {
			return nil, errors.New("manifest xattr is not a dictionary")
		}
		if err := bencode.DecodeBytes(raw, &x); err != nil {
			return nil, fmt.Errorf("manifest xattr: %w", err)
		}
		if len(x) > 0 {
			e.Xattrs = make(map[string][]byte, len(x))
			for k, v := range x {
				e.Xattrs[k] = []byte(v)
			}
			if err := checkXattrs(e.Xattrs); err != nil {
				return nil, fmt.Errorf("manifest xattr: %w", err)
			}
		}
	}
	if kind == KindDir {
		return e, nil
	}
	raw, hasInfo := top["info"]
	if !hasInfo {
		lraw, ok := top["length"]
		if !ok {
			return nil, errors.New("manifest has neither info nor length")
		}
		n, err := intValue(lraw, "length")
		if err != nil {
			return nil, err
		}
		if n != 0 {
			return nil, fmt.Errorf("manifest without info has length %d", n)
		}
		return e, nil
	}
	info, err := bt.ParseInfo(raw)
	if err != nil {
		return nil, fmt.Errorf("manifest info: %w", err)
	}
	if info.Length <= 0 {
		return nil, fmt.Errorf("manifest info length %d", info.Length)
	}
	if !bytes.Equal(info.Bencode(), raw) {
		// The info-hash must be the hash of the bytes in git; a
		// non-canonical info would change hash when re-encoded.
		return nil, errors.New("manifest info is not in canonical form")
	}
	e.Info, e.Size, e.Hash = info, info.Length, info.Hash()
	return e, nil
}

func u32FieldRef(top map[string]bencode.RawMessage, name string) (uint32, error) {
	raw, ok := top[name]
	if !ok {
		return 0, nil
	}
	n, err := intValue(raw, name)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > math.MaxUint32 {
		return 0, fmt.Errorf("manifest %s %d out of range", name, n)
	}
	return uint32(n), nil
}

func FuzzDecodeManifestSame(f *testing.F) {
	info := bt.NewInfo(100, 1<<18, make([]byte, 20))
	f.Add(encodeManifest(&Entry{Kind: KindFile, Mode: 0o644, Info: info, Xattrs: map[string][]byte{"user.a": []byte("b"), "user.e": {}}}))
	f.Add(encodeManifest(&Entry{Kind: KindDir, Mode: 0o755, Mtime: -1, UID: 7, GID: 8}))
	f.Add([]byte("d6:lengthi0ee"))
	f.Add([]byte("d5:xattrd1:ai1eee"))
	f.Add([]byte("d5:xattrdee"))
	f.Add([]byte("d3:gidi4294967296ee"))
	f.Add([]byte("d4:infod6:lengthi5eee"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, k := range []Kind{KindFile, KindDir} {
			got, err := decodeManifest(data, k)
			want, werr := decodeManifestRef(data, k)
			if (err == nil) != (werr == nil) {
				t.Fatalf("kind %v: error %v, reference %v", k, err, werr)
			}
			if err == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("kind %v: %+v, reference %+v", k, got, want)
			}
		}
	})
}
