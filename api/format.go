package api

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes rep for a terminal (what `delugefs status` prints
// without --json): per volume, its nodes (disks), peers, swarms and the
// files the node listed with their copy counts. Times are shown relative
// to rep.Time.
func (rep *StatusReport) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, v := range rep.Volumes {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		head := v.Head
		if len(head) > 12 {
			head = head[:12]
		}
		fmt.Fprintf(tw, "volume %s\thead %s\t%d files\t%s\n", v.Volume, orDash(head), v.Files, Bytes(uint64(max(v.Bytes, 0))))
		if v.Error != "" {
			fmt.Fprintf(tw, "  error: %s\n", v.Error)
			continue
		}
		if len(v.Nodes) > 0 {
			fmt.Fprintf(tw, "  NODE\tROOT\tBLOBS\tFREE\tTOTAL\n")
			for _, n := range v.Nodes {
				fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\n", n.ID, orDash(n.Root), n.Blobs, Bytes(n.Free), Bytes(n.Total))
			}
			for _, n := range v.Nodes {
				if n.Error != "" {
					fmt.Fprintf(tw, "  node %s refuses changes: %s\n", n.ID, n.Error)
				}
			}
		}
		if len(v.Peers) > 0 {
			fmt.Fprintf(tw, "  PEER\tADDRESS\tSTATE\tFREE\tTOTAL\tLAST SEEN\n")
			for _, p := range v.Peers {
				state := "down"
				if p.Alive {
					state = "alive"
				}
				seen := "-"
				if !p.LastSeen.IsZero() {
					seen = rep.Time.Sub(p.LastSeen).Truncate(time.Second).String() + " ago"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", p.Node, orDash(p.Addr), state, Bytes(p.Free), Bytes(p.Total), seen)
			}
		} else {
			fmt.Fprintf(tw, "  no peers\n")
		}
		if len(v.Swarm) > 0 {
			fmt.Fprintf(tw, "  SWARM\tPATH\tPROGRESS\tPEERS\tDOWN\tUP\n")
			for _, s := range v.Swarm {
				ih := s.InfoHash
				if len(ih) > 12 {
					ih = ih[:12]
				}
				prog := fmt.Sprintf("%.1f%%", 100*s.Progress)
				if s.Seeding {
					prog = "seeding"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s/s\t%s/s\n", ih, orDash(s.Path), prog, s.Peers, Bytes(uint64(max(s.Down, 0))), Bytes(uint64(max(s.Up, 0))))
			}
		}
		if len(v.Copies) > 0 {
			fmt.Fprintf(tw, "  FILE\tSIZE\tCOPIES\tHOLDERS\n")
			for _, f := range v.Copies {
				fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", f.Path, Bytes(uint64(max(f.Size, 0))), f.Copies, orDash(strings.Join(f.Holders, ",")))
			}
		}
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Bytes formats n in binary units: "0 B", "1.5 KiB", "3.0 GiB".
func Bytes(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	i := -1
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, units[i])
}
