package piece

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The picker transcripts in testdata/picker/*.txt are a tiny language in
// the style of etcd-io/raft's datadriven tests: a command line, a "----"
// line, the expected output, a blank line. Lines starting with # are
// comments. Run with -picker.rewrite to regenerate the expected output (then
// read the diff!).
//
// Commands (times are milliseconds, sizes take K and M suffixes, blocks are
// piece.block with blocks counted in 16 KiB):
//
//	new length=1M piece=256K [seed=N] [pipeline=N] [wantall] [ramin=S] [ramax=S] [latemin=T] [copies=N] [active=N]
//	peer ID [all|none|bits=0110...] [pipe=N] [choked]   (unchoked unless choked)
//	have ID PIECE...            haveall ID      havenone ID      remove ID
//	choke ID                    unchoke ID      pipeline ID N    wantall on|off
//	read RID off=S n=S deadline=T     cancelread RID
//	open R [ramin=S] [ramax=S] [none]      readahead R [ramin=S] [ramax=S] [none]
//	close R     readat R off=S n=S
//	recv ID BLOCK... at=T       reject ID BLOCK...
//	verify PIECE...             fail PIECE
//	step at=T                   deliver at=T [peer=ID] [max=N]  (answer outstanding requests, verify done pieces)
//	state
var pickerRewrite = flag.Bool("picker.rewrite", false, "rewrite the expected output of the picker transcripts")

var transcriptEpoch = time.Unix(1_700_000_000, 0)

func at(ms int64) time.Time { return transcriptEpoch.Add(time.Duration(ms) * time.Millisecond) }

func TestPickerTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/picker/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no transcripts in testdata/picker")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runTranscript(t, f) })
	}
}

func runTranscript(t *testing.T, path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	var out strings.Builder
	tr := &transcript{}
	for k := 0; k < len(lines); {
		line := lines[k]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			k++
			continue
		}
		cmdLine := k + 1
		k++
		if k >= len(lines) || lines[k] != "----" {
			t.Fatalf("%s:%d: command without ----", path, cmdLine)
		}
		k++
		var want []string
		for k < len(lines) && lines[k] != "" {
			want = append(want, lines[k])
			k++
		}
		got, err := tr.run(line)
		if err != nil {
			got = "error: " + err.Error()
		}
		if tr.p != nil {
			if err := checkPicker(tr.p); err != nil {
				t.Fatalf("%s:%d: %s: inconsistent picker: %v", path, cmdLine, line, err)
			}
		}
		got = strings.TrimRight(got, "\n")
		if got == "" {
			got = "ok"
		}
		if !*pickerRewrite && got != strings.Join(want, "\n") {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", path, cmdLine, line, got, strings.Join(want, "\n"))
		}
		fmt.Fprintf(&out, "%s\n----\n%s\n", line, got)
	}
	if *pickerRewrite {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type transcript struct {
	p *Picker
}

// args splits "k=v" words into a map and the rest into positional words.
func args(words []string) (pos []string, kv map[string]string) {
	kv = map[string]string{}
	for _, w := range words {
		if k, v, ok := strings.Cut(w, "="); ok {
			kv[k] = v
		} else {
			pos = append(pos, w)
		}
	}
	return pos, kv
}

func parseSize(s string) (int64, error) {
	mul := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mul, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mul, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mul, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mul, err
}

func (tr *transcript) block(s string) (Block, error) {
	ps, ks, ok := strings.Cut(s, ".")
	if !ok {
		return Block{}, fmt.Errorf("bad block %q", s)
	}
	i, err1 := strconv.Atoi(ps)
	k, err2 := strconv.Atoi(ks)
	if err1 != nil || err2 != nil || i < 0 || i >= tr.p.n || k < 0 || k >= tr.p.geo.NumBlocks(i) {
		return Block{}, fmt.Errorf("bad block %q", s)
	}
	return tr.p.geo.Block(i, k), nil
}

func (tr *transcript) run(line string) (string, error) {
	words := strings.Fields(line)
	cmd := words[0]
	pos, kv := args(words[1:])
	num := func(k int) int64 {
		if k >= len(pos) {
			panic(fmt.Sprintf("%s: missing argument %d", line, k+1))
		}
		n, err := parseSize(pos[k])
		if err != nil {
			panic(fmt.Sprintf("%s: %v", line, err))
		}
		return n
	}
	kvNum := func(k string, def int64) int64 {
		v, ok := kv[k]
		if !ok {
			return def
		}
		n, err := parseSize(v)
		if err != nil {
			panic(fmt.Sprintf("%s: %v", line, err))
		}
		return n
	}
	if cmd != "new" && tr.p == nil {
		return "", fmt.Errorf("no picker: start with new")
	}
	var b strings.Builder
	p := tr.p
	switch cmd {
	case "new":
		opts := Options{
			Seed:         uint64(kvNum("seed", 1)),
			Pipeline:     int(kvNum("pipeline", 0)),
			ReadAheadMin: kvNum("ramin", 0),
			ReadAheadMax: kvNum("ramax", 0),
			LateMin:      time.Duration(kvNum("latemin", 0)) * time.Millisecond,
			MaxCopies:    int(kvNum("copies", 0)),
			MaxActive:    int(kvNum("active", 0)),
			WantAll:      slices.Contains(pos, "wantall"),
		}
		np, err := NewPicker(Geometry{Length: kvNum("length", 0), PieceLength: kvNum("piece", 0)}, opts)
		if err != nil {
			return "", err
		}
		tr.p = np
		fmt.Fprintf(&b, "%d pieces, %d blocks", np.n, np.nblocks)
	case "peer":
		id := PeerID(num(0))
		p.AddPeer(id)
		if !slices.Contains(pos, "choked") {
			p.PeerChoked(id, false)
		}
		for _, w := range pos[1:] {
			switch w {
			case "all":
				p.PeerHaveAll(id)
			case "none":
				p.PeerHaveNone(id)
			case "choked":
			default:
				return "", fmt.Errorf("unknown word %q", w)
			}
		}
		if bits, ok := kv["bits"]; ok {
			bf := NewBitfield(p.n)
			for i, c := range bits {
				if c == '1' {
					bf.Set(i)
				}
			}
			if err := p.PeerBitfield(id, bf); err != nil {
				return "", err
			}
		}
		if v, ok := kv["pipe"]; ok {
			n, _ := strconv.Atoi(v)
			p.SetPipeline(id, n)
		}
	case "have":
		for k := 1; k < len(pos); k++ {
			p.PeerHave(PeerID(num(0)), int(num(k)))
		}
	case "haveall":
		p.PeerHaveAll(PeerID(num(0)))
	case "havenone":
		p.PeerHaveNone(PeerID(num(0)))
	case "remove":
		p.RemovePeer(PeerID(num(0)))
	case "choke":
		p.PeerChoked(PeerID(num(0)), true)
	case "unchoke":
		p.PeerChoked(PeerID(num(0)), false)
	case "pipeline":
		p.SetPipeline(PeerID(num(0)), int(num(1)))
	case "wantall":
		p.SetWantAll(pos[0] == "on")
	case "read":
		if p.AddRead(ReadID(num(0)), kvNum("off", 0), kvNum("n", 0), at(kvNum("deadline", 0))) {
			b.WriteString("done at once")
		}
	case "cancelread":
		p.CancelRead(ReadID(num(0)))
	case "open", "readahead":
		o := ReaderOptions{ReadAheadMin: kvNum("ramin", 0), ReadAheadMax: kvNum("ramax", 0), NoReadAhead: slices.Contains(pos, "none")}
		if cmd == "open" {
			p.OpenReader(ReaderID(num(0)), o)
		} else {
			p.SetReadAhead(ReaderID(num(0)), o)
		}
	case "close":
		p.CloseReader(ReaderID(num(0)))
	case "readat":
		id := ReaderID(num(0))
		p.ReaderAt(id, kvNum("off", 0), kvNum("n", 0))
		off, n := p.Window(id)
		fmt.Fprintf(&b, "window [%d, %d) %s", off, off+n, sizeString(n))
	case "recv":
		id := PeerID(num(0))
		for _, w := range pos[1:] {
			blk, err := tr.block(w)
			if err != nil {
				return "", err
			}
			useful, done := p.BlockReceived(id, blk, at(kvNum("at", 0)))
			fmt.Fprintf(&b, "%s useful=%t", blk, useful)
			if done {
				fmt.Fprintf(&b, " piece %d done", blk.Piece)
			}
			b.WriteString("\n")
		}
	case "reject":
		id := PeerID(num(0))
		for _, w := range pos[1:] {
			blk, err := tr.block(w)
			if err != nil {
				return "", err
			}
			p.RequestRejected(id, blk)
		}
	case "verify":
		for k := range pos {
			tr.verify(&b, int(num(k)))
		}
	case "fail":
		fmt.Fprintf(&b, "blame %v", p.PieceFailed(int(num(0))))
	case "step":
		acts := p.Step(at(kvNum("at", 0)))
		writeActions(&b, acts)
	case "deliver":
		now := at(kvNum("at", 0))
		only := PeerID(kvNum("peer", -1))
		limit := int(kvNum("max", 1<<30))
		for _, q := range slices.Clone(p.peers) {
			if kv["peer"] != "" && q.id != only {
				continue
			}
			var blks []Block
			for _, f := range q.inflight {
				blks = append(blks, p.blockOf(f.blk))
			}
			for k, blk := range blks {
				if k == limit {
					break
				}
				useful, done := p.BlockReceived(q.id, blk, now)
				fmt.Fprintf(&b, "%d sent %s", q.id, blk)
				if !useful {
					b.WriteString(" (useless)")
				}
				b.WriteString("\n")
				if done {
					tr.verify(&b, blk.Piece)
				}
			}
		}
	case "state":
		fmt.Fprintf(&b, "have %d/%d unrequested %d\n", p.nhave, p.n, p.unreq)
		for _, q := range p.peers {
			fmt.Fprintf(&b, "peer %d", q.id)
			if q.choked {
				b.WriteString(" choked")
			}
			fmt.Fprintf(&b, " %d/%d:", len(q.inflight), q.capacity)
			for _, f := range q.inflight {
				fmt.Fprintf(&b, " %s", p.blockOf(f.blk))
			}
			b.WriteString("\n")
		}
		for _, r := range p.reads {
			fmt.Fprintf(&b, "read %d pieces %d-%d missing %d\n", r.id, r.first, r.last, r.missing)
		}
	default:
		return "", fmt.Errorf("unknown command %q", cmd)
	}
	return b.String(), nil
}

func (tr *transcript) verify(b *strings.Builder, i int) {
	done := tr.p.PieceVerified(i)
	fmt.Fprintf(b, "verified %d", i)
	if len(done) > 0 {
		fmt.Fprintf(b, ", reads done %v", done)
	}
	b.WriteString("\n")
}

func writeActions(b *strings.Builder, acts []Action) {
	if len(acts) == 0 {
		b.WriteString("(nothing)")
		return
	}
	// Runs of requests to one peer are folded onto one line.
	for k := 0; k < len(acts); {
		a := acts[k]
		fmt.Fprintf(b, "%s %d %s", a.Kind, a.Peer, a.Block)
		k++
		for k < len(acts) && acts[k].Kind == a.Kind && acts[k].Peer == a.Peer {
			fmt.Fprintf(b, " %s", acts[k].Block)
			k++
		}
		b.WriteString("\n")
	}
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dM", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dK", n>>10)
	}
	return strconv.FormatInt(n, 10)
}
