//go:build linux

package discovery_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	hmdns "github.com/hashicorp/mdns"

	"github.com/delugefs/delugefs/cluster/discovery"
	"github.com/delugefs/delugefs/cluster/discovery/netnstest"
)

// childStockBrowse browses for ServiceType with hashicorp/mdns, an
// independent mDNS implementation (what a stock browser on the LAN does),
// and prints each service instance it finds as a JSON line.
func childStockBrowse(args []string) int {
	fs := flag.NewFlagSet("stockbrowse", flag.ContinueOnError)
	wait := fs.Duration("wait", 10*time.Second, "how long to browse")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	iface, err := net.InterfaceByName("eth0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	deadline := time.Now().Add(*wait)
	enc := json.NewEncoder(os.Stdout)
	for time.Now().Before(deadline) {
		entries := make(chan *hmdns.ServiceEntry, 16)
		done := make(chan struct{})
		go func() {
			for e := range entries {
				enc.Encode(map[string]any{"name": e.Name, "host": e.Host, "addr": e.AddrV4.String(), "port": e.Port, "txt": e.InfoFields})
			}
			close(done)
		}()
		p := hmdns.DefaultParams(strings.TrimSuffix(discovery.ServiceType, ".local."))
		p.Entries = entries
		p.Interface = iface
		p.Timeout = time.Second
		p.DisableIPv6 = true
		p.Logger = log.New(io.Discard, "", 0)
		if err := hmdns.Query(p); err != nil {
			fmt.Fprintln(os.Stderr, "query:", err)
		}
		close(entries)
		<-done
	}
	return 0
}

// TestStockBrowserSeesService: a stock mDNS browser (hashicorp/mdns) on
// another host of the LAN finds a node's _delugefs._tcp instance, with its
// API port in SRV and the volume and node ids in TXT.
func TestStockBrowserSeesService(t *testing.T) {
	nw := netnstest.New(t, 2)
	vol := randomID(t, "vol")
	node := nw.Hosts[0].StartChild("discovery", "-vol", vol, "-node", "n0", "-bt", "6881", "-api", "7450",
		"-interval", testInterval.String(), "-ttl", testTTL.String())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := node.WaitLine(ctx, func(l string) bool { return l == "ready" }); err != nil {
		t.Fatal(err)
	}
	// hashicorp/mdns joins the group on the default multicast interface:
	// give the browser's host (no default route) a multicast route.
	if out, err := nw.Hosts[1].Run(ctx, "ip", "route", "add", "224.0.0.0/4", "dev", "eth0"); err != nil {
		t.Fatalf("multicast route: %v: %s", err, out)
	}
	br := nw.Hosts[1].StartChild("stockbrowse", "-wait", "15s")
	line, err := br.WaitLine(ctx, func(l string) bool { return strings.Contains(l, vol) })
	if err != nil {
		t.Fatalf("the stock browser did not find the service: %v", err)
	}
	var e struct {
		Name, Host, Addr string
		Port             int
		Txt              []string
	}
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		t.Fatal(err)
	}
	txt := strings.Join(e.Txt, " ")
	if e.Port != 7450 || e.Addr != nw.Hosts[0].Addr.String() || !strings.Contains(txt, vol) || !strings.Contains(txt, "n0") {
		t.Errorf("stock browser saw %+v", e)
	}
	t.Logf("stock browser: %+v", e)
}
