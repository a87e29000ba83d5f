package wire_test

import (
	"fmt"
	"net"

	"github.com/delugefs/delugefs/bt/wire"
)

// Example sends a few messages through a Writer and reads them back with a
// Reader, reading the piece block straight into the caller's buffer.
func Example() {
	a, b := net.Pipe()
	go func() { // the writing side; exits after one flush
		defer a.Close()
		w := wire.NewWriter(a)
		block := []byte("sixteen KiB, in real life")
		for _, m := range []wire.Message{
			{ID: wire.Unchoke},
			{ID: wire.Have, Index: 3},
			wire.NewPiece(3, 0, block),
		} {
			w.Queue(&m)
		}
		w.Flush() // one vectored write; the block is not copied
	}()
	r := wire.NewReader(b, wire.Limits{})
	r.SetGeometry(wire.NewGeometry(10<<20, 1<<20)) // 10 pieces of 1 MiB
	var m wire.Message
	for r.Next(&m) == nil {
		if m.ID == wire.Piece {
			buf := make([]byte, r.Pending()) // or a pooled block
			r.ReadBlock(buf)
			fmt.Printf("%v: %q at byte %d\n", &m, buf, wire.NewGeometry(10<<20, 1<<20).Offset(m.Index, m.Begin))
			continue
		}
		fmt.Println(&m)
	}
	// Output:
	// unchoke
	// have 3
	// piece 3+0/25: "sixteen KiB, in real life" at byte 3145728
}
