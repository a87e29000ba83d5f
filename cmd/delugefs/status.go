package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/delugefs/delugefs/api"
	"github.com/delugefs/delugefs/node"
	"github.com/delugefs/delugefs/volume"
)

// runtimeInfo is what a running process leaves in the runtime directory
// so that `delugefs status` finds it without flags.
type runtimeInfo struct {
	PID    int      `json:"pid"`
	Volume string   `json:"volume"`
	API    string   `json:"api"` // host:port reachable from this machine
	Key    string   `json:"key"` // the volume key: the file is 0600
	Roots  []string `json:"roots"`
}

// runtimeDir is where running processes describe themselves:
// $XDG_RUNTIME_DIR/delugefs, or a per-user directory under the temp dir.
func runtimeDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "delugefs")
	}
	return filepath.Join(os.TempDir(), "delugefs-"+strconv.Itoa(os.Getuid()))
}

// writeRuntime records the running volume; it returns the file's path.
func writeRuntime(v *volume.Volume) (string, error) {
	dir := runtimeDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	_, port, _ := net.SplitHostPort(v.APIAddr().String())
	ri := runtimeInfo{PID: os.Getpid(), Volume: v.Primary().Config.VolumeID, API: "127.0.0.1:" + port, Key: v.Key()}
	for _, n := range v.Nodes {
		ri.Roots = append(ri.Roots, n.Root)
	}
	data, _ := json.Marshal(ri)
	p := filepath.Join(dir, strconv.Itoa(os.Getpid())+".json")
	if err := os.WriteFile(p+".tmp", data, 0o600); err != nil {
		return "", err
	}
	return p, os.Rename(p+".tmp", p)
}

func removeRuntime(p string) {
	if p != "" {
		os.Remove(p)
	}
}

// liveRuntimes returns the records of running processes, removing those
// of dead ones.
func liveRuntimes() []runtimeInfo {
	dir := runtimeDir()
	ents, _ := os.ReadDir(dir)
	var out []runtimeInfo
	for _, e := range ents {
		if filepath.Ext(e.Name()) != ".json" {
			continue
		}
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var ri runtimeInfo
		if json.Unmarshal(data, &ri) != nil || ri.PID <= 0 {
			continue
		}
		if !processAlive(ri.PID) {
			os.Remove(p)
			continue
		}
		out = append(out, ri)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Volume < out[j].Volume || out[i].Volume == out[j].Volume && out[i].PID < out[j].PID
	})
	return out
}

// statusMain is `delugefs status`: what each running process of this
// machine (or the one at --api) knows of its volume.
func statusMain(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("delugefs status", flag.ContinueOnError)
	fl.SetOutput(stderr)
	apiAddr := fl.String("api", "", "API address HOST:PORT of a node (default: every delugefs process running on this machine)")
	asJSON := fl.Bool("json", false, "print the status as JSON")
	id := fl.String("id", "", "the volume (default: every volume found)")
	key := fl.String("key", os.Getenv("DELUGEFS_KEY"), "the volume key, with --api (or give --root)")
	root := fl.String("root", "", "a node's root on this machine, to read the volume key from, with --api")
	timeout := fl.Duration("timeout", 10*time.Second, "how long to wait for the answers")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: delugefs status [--api HOST:PORT (--key KEY | --root DIR) --id VOLUME] [--json]\n\nPeers (alive, address, disk, free space), this process's disks, and each file's copies and swarm progress.\n\nFlags:\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	type target struct{ api, volume, key string }
	var targets []target
	if *apiAddr != "" {
		k, vol := *key, *id
		if *root != "" {
			c, err := node.LoadConfig(*root, vol)
			if err != nil {
				fmt.Fprintln(stderr, "delugefs status:", err)
				return 2
			}
			k, vol = c.VolumeKey, c.VolumeID
		}
		if k == "" || vol == "" {
			fmt.Fprintln(stderr, "delugefs status: --api needs --id and the volume key (--key, or --root of a node of the volume)")
			return 2
		}
		targets = append(targets, target{*apiAddr, vol, k})
	} else {
		for _, ri := range liveRuntimes() {
			if *id == "" || ri.Volume == *id {
				targets = append(targets, target{ri.API, ri.Volume, ri.Key})
			}
		}
		if len(targets) == 0 {
			fmt.Fprintf(stderr, "delugefs status: no delugefs process is running on this machine (looked in %s); give --api HOST:PORT for another one\n", runtimeDir())
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	rep := &api.StatusReport{}
	code := 0
	for _, t := range targets {
		c, err := api.NewClient("http://"+t.api, t.volume, t.key)
		if err != nil {
			fmt.Fprintln(stderr, "delugefs status:", err)
			return 2
		}
		r, err := c.Status(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "delugefs status: %s: %v\n", t.api, err)
			code = 1
			continue
		}
		rep.Volumes = append(rep.Volumes, r.Volumes...)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return 1
		}
		return code
	}
	if err := rep.WriteText(stdout); err != nil {
		return 1
	}
	return code
}

// keyMain is `delugefs key --root DIR`: print the volume key of a node,
// which another machine needs (--key) to add its disks to the volume.
func keyMain(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("delugefs key", flag.ContinueOnError)
	fl.SetOutput(stderr)
	root := fl.String("root", "", "a node's root (required)")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *root == "" {
		fmt.Fprintln(stderr, "delugefs key: --root is required")
		return 2
	}
	c, err := node.LoadConfig(*root, "")
	if err != nil {
		fmt.Fprintln(stderr, "delugefs key:", err)
		return 2
	}
	fmt.Fprintln(stdout, c.VolumeKey)
	return 0
}
