package piece

import (
	"math/rand/v2"
	"testing"
	"time"
)

// benchSwarm builds a picker for 10,000 pieces of 256 KiB with 50 peers: 10
// seeds and 40 peers holding a random half of the pieces, pipelines of 32,
// and fills every pipeline once.
func benchSwarm(b *testing.B, wantAll bool) (*Picker, time.Time) {
	b.Helper()
	const pieces, peers = 10_000, 50
	g := Geometry{Length: pieces*256<<10 - 1000, PieceLength: 256 << 10}
	p, err := NewPicker(g, Options{Seed: 1, WantAll: wantAll, Pipeline: 32})
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for id := range PeerID(peers) {
		p.AddPeer(id)
		p.PeerChoked(id, false)
		if id < 10 {
			p.PeerHaveAll(id)
			continue
		}
		bf := NewBitfield(pieces)
		for i := range pieces {
			if r.IntN(2) == 0 {
				bf.Set(i)
			}
		}
		if err := p.PeerBitfield(id, bf); err != nil {
			b.Fatal(err)
		}
	}
	now := transcriptEpoch
	p.Step(now)
	return p, now
}

// BenchmarkPickerStep measures one turn of the swarm actor's loop in a 50
// peer × 10,000 piece swarm: a block arrives (round robin over the peers,
// oldest request first), its piece is verified when complete, and Step
// refills the pipelines.
//
//   - rarest: downloading the whole blob rarest-first.
//   - stream: a reader reading sequentially 128 KiB at a time (each read
//     registered with a deadline, the window growing to 64 MiB), plus the
//     rest of the blob rarest-first.
//
// BenchmarkPickerStep/refill is the worst case instead: every peer chokes
// and unchokes us (dropping its 32 requests) and one Step refills all 50
// pipelines, 1,600 requests.
func BenchmarkPickerStep(b *testing.B) {
	b.Run("refill", func(b *testing.B) {
		p, now := benchSwarm(b, true)
		b.ReportAllocs()
		for b.Loop() {
			for _, q := range p.peers {
				p.PeerChoked(q.id, true)
				p.PeerChoked(q.id, false)
			}
			now = now.Add(time.Millisecond)
			if len(p.Step(now)) != 50*32 {
				b.Fatal("pipelines not refilled")
			}
		}
	})
	for _, mode := range []string{"rarest", "stream"} {
		b.Run(mode, func(b *testing.B) {
			p, now := benchSwarm(b, true)
			var pos int64
			var rid ReadID
			next := 0
			b.ReportAllocs()
			for b.Loop() {
				if p.Complete() {
					b.StopTimer()
					p, now = benchSwarm(b, true)
					pos = 0
					b.StartTimer()
				}
				now = now.Add(100 * time.Microsecond)
				if mode == "stream" && p.Reads() == 0 && pos < p.geo.Length {
					p.ReaderAt(1, pos, 128<<10)
					rid++
					p.AddRead(rid, pos, 128<<10, now.Add(20*time.Millisecond))
					pos += 128 << 10
				}
				// The next peer with a request out answers its oldest.
				for range p.peers {
					q := p.peers[next%len(p.peers)]
					next++
					if len(q.inflight) > 0 {
						blk := p.blockOf(q.inflight[0].blk)
						if _, done := p.BlockReceived(q.id, blk, now); done {
							p.PieceVerified(blk.Piece)
						}
						break
					}
				}
				p.Step(now)
			}
		})
	}
}
