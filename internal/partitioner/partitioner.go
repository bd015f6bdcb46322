// Package partitioner computes the partition a producer puts a key in, with
// the same functions the producers use: murmur2 as the Java clients, Kafka
// Streams and kafka-console-producer do, or CRC32 as librdkafka's and kcat's
// default (consistent_random) does. Routing a query to the wrong pod is
// silent, so both must match their producers bit for bit.
package partitioner

import (
	"fmt"
	"hash/crc32"
)

// Func maps a non-null key to one of n partitions.
type Func func(key []byte, n int32) int32

// Named returns the partitioner by its configuration name.
func Named(name string) (Func, error) {
	switch name {
	case "murmur2":
		return Murmur2, nil
	case "crc32":
		return CRC32, nil
	}
	return nil, fmt.Errorf("unknown partitioner %q (want murmur2 or crc32)", name)
}

// LibrdkafkaName is the librdkafka producer "partitioner" property that
// places keys as the named partitioner does.
func LibrdkafkaName(name string) string {
	if name == "crc32" {
		return "consistent_random"
	}
	return "murmur2_random"
}

// Murmur2 is the Java client's default partitioner for keyed records:
// toPositive(murmur2(key)) % n.
func Murmur2(key []byte, n int32) int32 {
	return int32((murmur2(key) & 0x7fffffff) % uint32(n))
}

// CRC32 is librdkafka's consistent partitioner: crc32(key) % n.
func CRC32(key []byte, n int32) int32 {
	return int32(crc32.ChecksumIEEE(key) % uint32(n))
}

// murmur2 is Kafka's Utils.murmur2 with its fixed seed.
func murmur2(data []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	for i := 0; i+4 <= length; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := length &^ 3
	switch length & 3 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
