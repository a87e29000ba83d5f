package discovery

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"golang.org/x/net/ipv4"
)

// Network says which interfaces discovery speaks mDNS on.
type Network struct {
	// Interfaces names the interfaces to use. Empty means every interface
	// that is up, multicast-capable, not loopback and has an IPv4 address.
	Interfaces []string
	// IncludeLoopback adds the loopback interface (tests on one host).
	IncludeLoopback bool
}

// ErrNoInterfaces is returned when no interface qualifies for mDNS.
var ErrNoInterfaces = errors.New("discovery: no usable multicast interface")

// pick returns the interfaces to use.
func (n Network) pick() ([]net.Interface, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []net.Interface
	for _, ifi := range all {
		loop := ifi.Flags&net.FlagLoopback != 0
		switch {
		case len(n.Interfaces) > 0:
			if !slices.Contains(n.Interfaces, ifi.Name) && !(loop && n.IncludeLoopback) {
				continue
			}
		case loop:
			if !n.IncludeLoopback {
				continue
			}
		case ifi.Flags&net.FlagMulticast == 0:
			continue
		}
		if ifi.Flags&net.FlagUp == 0 || !hasIPv4(ifi) {
			if len(n.Interfaces) > 0 && slices.Contains(n.Interfaces, ifi.Name) {
				return nil, fmt.Errorf("%w: %s is down or has no IPv4 address", ErrNoInterfaces, ifi.Name)
			}
			continue
		}
		out = append(out, ifi)
	}
	for _, name := range n.Interfaces {
		if !slices.ContainsFunc(out, func(ifi net.Interface) bool { return ifi.Name == name }) {
			return nil, fmt.Errorf("%w: no interface %q", ErrNoInterfaces, name)
		}
	}
	if len(out) == 0 {
		return nil, ErrNoInterfaces
	}
	return out, nil
}

func hasIPv4(ifi net.Interface) bool {
	return ifaceIPv4(ifi).IsValid()
}

// ifaceIPv4 returns the first IPv4 address of an interface.
func ifaceIPv4(ifi net.Interface) netip.Addr {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap().Is4() {
				return ip.Unmap()
			}
		}
	}
	return netip.Addr{}
}

var mdnsGroup = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: mdnsPort}

// listenMulticast opens a socket on port 5353 (shared with other mDNS
// sockets on the host by SO_REUSEADDR, which Go sets for a multicast
// listen address) joined to the mDNS group on each interface.
func listenMulticast(ifs []net.Interface) (*ipv4.PacketConn, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(224, 0, 0, 0), Port: mdnsPort})
	if err != nil {
		return nil, fmt.Errorf("listen mdns: %w", err)
	}
	pc := ipv4.NewPacketConn(c)
	joined := 0
	for i := range ifs {
		if err := pc.JoinGroup(&ifs[i], mdnsGroup); err == nil {
			joined++
		}
	}
	if joined == 0 {
		pc.Close()
		return nil, fmt.Errorf("%w: joining the mDNS group failed on every interface", ErrNoInterfaces)
	}
	if err := pc.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true); err != nil {
		pc.Close()
		return nil, fmt.Errorf("mdns socket control messages: %w", err)
	}
	// Several nodes may share a host: they hear each other only through
	// the loopback copy of multicast.
	if err := pc.SetMulticastLoopback(true); err != nil {
		pc.Close()
		return nil, fmt.Errorf("mdns socket loopback: %w", err)
	}
	if err := pc.SetMulticastTTL(255); err != nil {
		pc.Close()
		return nil, fmt.Errorf("mdns socket ttl: %w", err)
	}
	return pc, nil
}

// Usable reports whether n has an interface discovery can speak mDNS on:
// nil, or an error wrapping ErrNoInterfaces that says why not (a machine
// with only a loopback, a named interface that is down or missing).
func (n Network) Usable() error {
	_, err := n.pick()
	return err
}
