package piece

import "testing"

func TestLength(t *testing.T) {
	tests := []struct {
		size, want int64
	}{
		{0, 256 << 10},
		{1, 256 << 10},
		{512 << 20, 256 << 10},
		{512<<20 + 1, 512 << 10},
		{1 << 30, 512 << 10},
		{4 << 30, 2 << 20},
		{16 << 30, 8 << 20},
		{1 << 40, 8 << 20},
	}
	for _, tt := range tests {
		if got := Length(tt.size); got != tt.want {
			t.Errorf("Length(%d) = %d, want %d", tt.size, got, tt.want)
		}
	}
	for size := int64(1); size < 1<<45; size *= 3 {
		l := Length(size)
		if l&(l-1) != 0 || l < MinLength || l > MaxLength {
			t.Fatalf("Length(%d) = %d: not a power of two in bounds", size, l)
		}
		if n := NumPieces(size, l); l < MaxLength && n > TargetPieces {
			t.Fatalf("Length(%d) = %d gives %d pieces", size, l, n)
		}
	}
}
