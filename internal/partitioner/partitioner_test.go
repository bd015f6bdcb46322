package partitioner

import "testing"

// The expected values are those of Kafka's Java client
// (org.apache.kafka.common.utils.Utils.murmur2, as in its UtilsTest) and of
// Go's IEEE CRC-32, which librdkafka's consistent partitioner uses.
func TestMurmur2MatchesJavaClient(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want int32 // Utils.murmur2 as a signed Java int
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	} {
		if got := int32(murmur2([]byte(tc.key))); got != tc.want {
			t.Errorf("murmur2(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
}

func TestPartitionsInRange(t *testing.T) {
	for _, f := range []Func{Murmur2, CRC32} {
		for _, k := range []string{"", "foo", "héllo wörld", "a:b c"} {
			if p := f([]byte(k), 12); p < 0 || p >= 12 {
				t.Errorf("partition %d out of range for %q", p, k)
			}
		}
	}
}

func FuzzMurmur2InRange(f *testing.F) {
	f.Add([]byte("foo"), int32(4))
	f.Fuzz(func(t *testing.T, key []byte, n int32) {
		if n <= 0 {
			return
		}
		if p := Murmur2(key, n); p < 0 || p >= n {
			t.Fatalf("partition %d of %d", p, n)
		}
	})
}
