package piece

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func TestBitfieldAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 70; n++ {
		bf := NewBitfield(n)
		model := map[int]bool{}
		for op := 0; op < 200 && n > 0; op++ {
			i := r.IntN(n)
			if r.IntN(2) == 0 {
				if bf.Set(i) == model[i] {
					t.Fatalf("n=%d Set(%d) changed=%v with model %v", n, i, !model[i], model[i])
				}
				model[i] = true
			} else {
				if bf.Clear(i) != model[i] {
					t.Fatalf("n=%d Clear(%d) wrong change report", n, i)
				}
				delete(model, i)
			}
			if bf.Count() != len(model) {
				t.Fatalf("n=%d count %d, model %d", n, bf.Count(), len(model))
			}
			start := r.IntN(n + 1)
			wantSet, wantClear := -1, -1
			for j := start; j < n; j++ {
				if model[j] && wantSet < 0 {
					wantSet = j
				}
				if !model[j] && wantClear < 0 {
					wantClear = j
				}
			}
			if got := bf.NextSet(start); got != wantSet {
				t.Fatalf("n=%d NextSet(%d) = %d, want %d", n, start, got, wantSet)
			}
			if got := bf.NextClear(start); got != wantClear {
				t.Fatalf("n=%d NextClear(%d) = %d, want %d", n, start, got, wantClear)
			}
		}
		back, err := ParseBitfield(bf.Bytes(), n)
		if err != nil || back.Count() != bf.Count() {
			t.Fatalf("n=%d parse back: %v", n, err)
		}
	}
}

func TestParseBitfieldRefuses(t *testing.T) {
	if _, err := ParseBitfield([]byte{0xff}, 7); !errors.Is(err, ErrBitfield) {
		t.Errorf("spare bit set: %v", err)
	}
	if _, err := ParseBitfield([]byte{0xff, 0}, 8); !errors.Is(err, ErrBitfield) {
		t.Errorf("too long: %v", err)
	}
	if _, err := ParseBitfield(nil, 1); !errors.Is(err, ErrBitfield) {
		t.Errorf("too short: %v", err)
	}
	full := FullBitfield(13)
	if !full.Full() || full.Has(13) || !full.Has(12) {
		t.Errorf("FullBitfield(13) wrong: %x", full.Bytes())
	}
	if _, err := ParseBitfield(full.Bytes(), 13); err != nil {
		t.Errorf("FullBitfield does not parse: %v", err)
	}
}
