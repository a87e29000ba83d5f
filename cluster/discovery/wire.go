package discovery

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// ServiceType is the DNS-SD service type every DelugeFS node announces.
const ServiceType = "_delugefs._tcp"

// serviceName is the browse name of ServiceType in the mDNS domain.
const serviceName = ServiceType + ".local."

// TXT record keys. Values are plain strings; ports and the format version
// are decimal.
const (
	txtVolume  = "vol"
	txtNode    = "node"
	txtBTPort  = "bt"
	txtAPIPort = "api"
	txtFormat  = "fmt"
)

// maxIDLen bounds volume and node ids so a TXT string ("key=value") stays
// within one 255-byte character-string.
const maxIDLen = 200

// maxInstanceLen is the DNS label limit for a DNS-SD instance name.
const maxInstanceLen = 63

// InstanceName returns the DNS-SD instance name a node announces: the
// volume id and node id joined by a dash, shortened with a hash of both
// when that would pass the 63-byte label limit. The TXT record, not the
// name, is authoritative for both ids.
func InstanceName(volumeID, nodeID string) string {
	name := volumeID + "-" + nodeID
	if len(name) <= maxInstanceLen && !strings.ContainsAny(name, ".\\") && printable(name) {
		return name
	}
	sum := idHash(volumeID, nodeID)
	keep := cleanLabel(name)
	if len(keep) > maxInstanceLen-17 {
		keep = keep[:maxInstanceLen-17]
	}
	return keep + "-" + sum[:16]
}

// hostName returns the mDNS host name (without the trailing dot) a node's
// SRV record points at.
func hostName(volumeID, nodeID string) string {
	return "dfs-" + idHash(volumeID, nodeID)[:16] + ".local"
}

func idHash(volumeID, nodeID string) string {
	h := sha256.Sum256([]byte(volumeID + "\x00" + nodeID))
	return hex.EncodeToString(h[:])
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// cleanLabel keeps the ASCII letters, digits and dashes of s.
func cleanLabel(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// instanceFQDN returns the lower-cased service instance name, the key of
// the peer table, as it appears in DNS records. InstanceName never yields
// dots or backslashes, so no escaping is needed.
func instanceFQDN(instance string) string {
	return strings.ToLower(instance + "." + serviceName)
}

// Info is what a node says about itself in its TXT record.
type Info struct {
	VolumeID string
	NodeID   string
	BTPort   uint16
	APIPort  uint16
	Format   int
}

// txt encodes the info as TXT character-strings.
func (in Info) txt() []string {
	return []string{
		txtVolume + "=" + in.VolumeID,
		txtNode + "=" + in.NodeID,
		txtBTPort + "=" + strconv.Itoa(int(in.BTPort)),
		txtAPIPort + "=" + strconv.Itoa(int(in.APIPort)),
		txtFormat + "=" + strconv.Itoa(in.Format),
	}
}

func (in Info) validate() error {
	switch {
	case in.VolumeID == "" || len(in.VolumeID) > maxIDLen || !printable(in.VolumeID):
		return fmt.Errorf("%w: volume id %q", ErrInvalid, in.VolumeID)
	case in.NodeID == "" || len(in.NodeID) > maxIDLen || !printable(in.NodeID):
		return fmt.Errorf("%w: node id %q", ErrInvalid, in.NodeID)
	case in.Format < 0:
		return fmt.Errorf("%w: format version %d", ErrInvalid, in.Format)
	}
	return nil
}

// parseTXT decodes a TXT record; ok is false when a field is missing or
// malformed. Unknown keys are ignored (later versions may add some).
func parseTXT(strs []string) (in Info, ok bool) {
	var have int
	for _, s := range strs {
		k, v, found := strings.Cut(s, "=")
		if !found {
			continue
		}
		switch strings.ToLower(k) {
		case txtVolume:
			in.VolumeID = v
			have |= 1
		case txtNode:
			in.NodeID = v
			have |= 2
		case txtBTPort:
			p, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return Info{}, false
			}
			in.BTPort = uint16(p)
			have |= 4
		case txtAPIPort:
			p, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return Info{}, false
			}
			in.APIPort = uint16(p)
			have |= 8
		case txtFormat:
			f, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return Info{}, false
			}
			in.Format = int(f)
			have |= 16
		}
	}
	if have != 31 || in.validate() != nil {
		return Info{}, false
	}
	return in, true
}

// sighting is what one mDNS response says about one service instance.
type sighting struct {
	instance string       // lower-cased instance FQDN, the table key
	goodbye  bool         // a PTR or SRV record with TTL 0
	info     *Info        // from the TXT record, when present and valid
	port     uint16       // SRV port, when hasSRV
	hasSRV   bool         //
	host     string       // SRV target, lower-cased
	addrs    []netip.Addr // A records of the SRV target, else the source
}

// packet is one datagram as the socket reader hands it to the actor.
type packet struct {
	data    []byte
	src     netip.AddrPort
	ifIndex int
}

// parsed is the part of a datagram discovery cares about.
type parsed struct {
	// query is set for a multicast PTR query for ServiceType that asks
	// for multicast answers (no QU bit, sent from port 5353): every
	// responder answers it to the group, so it refreshes everyone.
	query     bool
	sightings []sighting
}

// parseMessage decodes one mDNS datagram. Records about other services are
// ignored; a message that does not parse is an error.
func parseMessage(b []byte, src netip.AddrPort) (parsed, error) {
	var msg dnsmessage.Message
	if err := msg.Unpack(b); err != nil {
		return parsed{}, fmt.Errorf("parse mdns message: %w", err)
	}
	var out parsed
	if !msg.Header.Response {
		for _, q := range msg.Questions {
			if q.Type == dnsmessage.TypePTR && strings.EqualFold(q.Name.String(), serviceName) &&
				q.Class&(1<<15) == 0 && src.Port() == mdnsPort {
				out.query = true
			}
		}
		return out, nil
	}
	records := make([]dnsmessage.Resource, 0, len(msg.Answers)+len(msg.Additionals))
	records = append(records, msg.Answers...)
	records = append(records, msg.Additionals...)

	byInst := map[string]*sighting{}
	var order []string
	get := func(name string) *sighting {
		s, ok := byInst[name]
		if !ok {
			s = &sighting{instance: name}
			byInst[name] = s
			order = append(order, name)
		}
		return s
	}
	isOurs := func(name string) bool {
		return len(name) > len(serviceName) && strings.HasSuffix(name, "."+serviceName)
	}
	hostAddrs := map[string][]netip.Addr{}
	for _, r := range records {
		name := strings.ToLower(r.Header.Name.String())
		switch body := r.Body.(type) {
		case *dnsmessage.PTRResource:
			if name != serviceName {
				continue
			}
			target := strings.ToLower(body.PTR.String())
			if !isOurs(target) {
				continue
			}
			s := get(target)
			if r.Header.TTL == 0 {
				s.goodbye = true
			}
		case *dnsmessage.SRVResource:
			if !isOurs(name) {
				continue
			}
			s := get(name)
			if r.Header.TTL == 0 {
				s.goodbye = true
			}
			s.hasSRV = true
			s.port = body.Port
			s.host = strings.ToLower(body.Target.String())
		case *dnsmessage.TXTResource:
			if !isOurs(name) {
				continue
			}
			s := get(name)
			if r.Header.TTL == 0 {
				s.goodbye = true
			}
			if in, ok := parseTXT(body.TXT); ok {
				s.info = &in
			}
		case *dnsmessage.AResource:
			if r.Header.TTL > 0 {
				hostAddrs[name] = append(hostAddrs[name], netip.AddrFrom4(body.A))
			}
		case *dnsmessage.AAAAResource:
			if r.Header.TTL > 0 {
				hostAddrs[name] = append(hostAddrs[name], netip.AddrFrom16(body.AAAA))
			}
		}
	}
	for _, name := range order {
		s := byInst[name]
		if s.hasSRV {
			s.addrs = hostAddrs[s.host]
		}
		if len(s.addrs) == 0 && src.Addr().IsValid() {
			s.addrs = []netip.Addr{src.Addr().Unmap()}
		}
		out.sightings = append(out.sightings, *s)
	}
	return out, nil
}

// mdnsPort is the mDNS UDP port.
const mdnsPort = 5353

// buildQuery packs the PTR question a browser multicasts for ServiceType.
func buildQuery() ([]byte, error) {
	msg := dnsmessage.Message{
		Questions: []dnsmessage.Question{{
			Name:  dnsmessage.MustNewName(serviceName),
			Type:  dnsmessage.TypePTR,
			Class: dnsmessage.ClassINET,
		}},
	}
	b, err := msg.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack mdns query: %w", err)
	}
	return b, nil
}

// buildResponse packs a response announcing (ttl > 0) or withdrawing
// (ttl == 0, a goodbye) one instance: PTR, SRV, TXT and, when addr is
// valid and ttl > 0, the host's A record.
func buildResponse(instance, host string, port uint16, in Info, addr netip.Addr, ttl uint32) ([]byte, error) {
	inst, err := dnsmessage.NewName(instance + "." + serviceName)
	if err != nil {
		return nil, fmt.Errorf("build response: instance name: %w", err)
	}
	target, err := dnsmessage.NewName(host + ".")
	if err != nil {
		return nil, fmt.Errorf("build response: host name: %w", err)
	}
	hdr := func(name dnsmessage.Name, t dnsmessage.Type) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: name, Type: t, Class: dnsmessage.ClassINET, TTL: ttl}
	}
	msg := dnsmessage.Message{
		Header: dnsmessage.Header{Response: true, Authoritative: true},
		Answers: []dnsmessage.Resource{{
			Header: hdr(dnsmessage.MustNewName(serviceName), dnsmessage.TypePTR),
			Body:   &dnsmessage.PTRResource{PTR: inst},
		}},
		Additionals: []dnsmessage.Resource{
			{Header: hdr(inst, dnsmessage.TypeSRV), Body: &dnsmessage.SRVResource{Target: target, Port: port}},
			{Header: hdr(inst, dnsmessage.TypeTXT), Body: &dnsmessage.TXTResource{TXT: in.txt()}},
		},
	}
	if addr.Is4() && ttl > 0 {
		msg.Additionals = append(msg.Additionals, dnsmessage.Resource{
			Header: hdr(target, dnsmessage.TypeA), Body: &dnsmessage.AResource{A: addr.As4()},
		})
	}
	b, err := msg.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack mdns response: %w", err)
	}
	return b, nil
}
