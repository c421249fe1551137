package bench

import (
	"math/rand/v2"
	"strings"
)

// Keys is a key space generated before the clock starts: key i is the
// prefix followed by i in lowercase hexadecimal, zero-padded to the key
// size, so that keys sort in index order ("/bench/00000000000000000000002a"
// is key 42 of size 32). All keys share one backing string: Key does not
// allocate.
type Keys struct {
	all  string
	size int
	n    int
}

// NewKeys generates n keys of size bytes under prefix.
// REQUIRES: size >= len(prefix) + hexDigits(n).
func NewKeys(prefix string, size, n int) *Keys {
	var b strings.Builder
	b.Grow(size * n)
	buf := make([]byte, 0, size)
	for i := range n {
		buf = appendKey(buf[:0], prefix, size, uint64(i))
		b.Write(buf)
	}
	return &Keys{all: b.String(), size: size, n: n}
}

// Key returns key i. REQUIRES: 0 <= i < Len().
func (k *Keys) Key(i int) string { return k.all[i*k.size : (i+1)*k.size] }

// Len is the number of keys.
func (k *Keys) Len() int { return k.n }

// appendKey appends key i of the given size to dst.
func appendKey(dst []byte, prefix string, size int, i uint64) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, prefix...)
	start := len(dst)
	for range size - len(prefix) {
		dst = append(dst, '0')
	}
	for p := len(dst) - 1; p >= start && i > 0; p-- {
		dst[p] = hex[i&15]
		i >>= 4
	}
	return dst
}

// prefixEnd is the end of the range of every key under prefix, as
// clientv3.GetPrefixRangeEnd.
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00"
}

// newValue returns n printable pseudo-random bytes from a fixed seed, so
// that values do not compress to nothing and runs are repeatable.
func newValue(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}
