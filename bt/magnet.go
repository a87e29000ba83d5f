package bt

import (
	"encoding/base32"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrMagnet is wrapped by ParseMagnet's errors.
var ErrMagnet = errors.New("bt: invalid magnet link")

// Magnet is a BitTorrent v1 magnet link: an info-hash, an optional display
// name, and optional peer addresses (x.pe, BEP 9).
type Magnet struct {
	InfoHash InfoHash
	Name     string
	Peers    []string
}

// ParseMagnet parses "magnet:?xt=urn:btih:<40 hex or 32 base32>&dn=...&x.pe=host:port".
func ParseMagnet(s string) (Magnet, error) {
	var m Magnet
	u, err := url.Parse(s)
	if err != nil {
		return m, fmt.Errorf("%w: %v", ErrMagnet, err)
	}
	if u.Scheme != "magnet" {
		return m, fmt.Errorf("%w: scheme %q is not magnet", ErrMagnet, u.Scheme)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return m, fmt.Errorf("%w: %v", ErrMagnet, err)
	}
	found := false
	for _, xt := range q["xt"] {
		v, ok := strings.CutPrefix(xt, "urn:btih:")
		if !ok {
			continue
		}
		switch len(v) {
		case 40:
			m.InfoHash, err = ParseInfoHash(strings.ToLower(v))
		case 32:
			var b []byte
			b, err = base32.StdEncoding.DecodeString(strings.ToUpper(v))
			copy(m.InfoHash[:], b)
		default:
			err = fmt.Errorf("btih %q has %d characters", v, len(v))
		}
		if err != nil {
			return m, fmt.Errorf("%w: %v", ErrMagnet, err)
		}
		found = true
		break
	}
	if !found {
		return m, fmt.Errorf("%w: no urn:btih exact topic", ErrMagnet)
	}
	m.Name = q.Get("dn")
	m.Peers = q["x.pe"]
	return m, nil
}

// String formats the magnet link with a hex info-hash.
func (m Magnet) String() string {
	var b strings.Builder
	b.WriteString("magnet:?xt=urn:btih:")
	b.WriteString(m.InfoHash.String())
	if m.Name != "" {
		b.WriteString("&dn=")
		b.WriteString(url.QueryEscape(m.Name))
	}
	for _, p := range m.Peers {
		b.WriteString("&x.pe=")
		b.WriteString(url.QueryEscape(p))
	}
	return b.String()
}
