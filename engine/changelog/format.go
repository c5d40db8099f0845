package changelog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/url"
	"strconv"

	"github.com/pulsehq/pulse/engine"
)

// Records of the changelog topic. A checkpoint of a partition is stored
// as chunks followed by a manifest, every record keyed
//
//	pulse-checkpoint/GROUP/TOPIC/PARTITION/NONCE/INDEX   a chunk (INDEX 0, 1, …)
//	pulse-checkpoint/GROUP/TOPIC/PARTITION/NONCE/m       its manifest
//
// NONCE is random per checkpoint, so no two checkpoints share a key and
// compaction never mixes the chunks of two of them; a checkpoint leaves
// the topic when a later save writes tombstones for its keys. The group
// is in the key (path-escaped) because two groups reading one topic with
// different rules hold different states.
//
// Values, integers big endian:
//
//	chunk:    "PULSECLC" | version u16 | nonce u64 | index u32 | crc32c(payload) u32 | payload
//	manifest: "PULSECLM" | version u16 | partition i32 | nonce u64 | chunks u32 |
//	          size u64 | crc32c(checkpoint) u32 | first i64 | prev nonce u64 |
//	          prev chunks u32 | crc32c(all before) u32
//
// first is the changelog offset of chunk 0: a restore reads from there to
// the manifest, nothing else. prev names the checkpoint this one replaces,
// which the next save deletes (a checkpoint stays readable until a newer
// one is complete, so there is always a previous good one to fall back
// to). Readers refuse other versions and bad checksums.
const (
	keyRoot       = "pulse-checkpoint/"
	chunkMagic    = "PULSECLC"
	manifestMagic = "PULSECLM"
	formatVersion = 1

	chunkHeader  = len(chunkMagic) + 2 + 8 + 4 + 4
	manifestSize = len(manifestMagic) + 2 + 4 + 8 + 4 + 8 + 4 + 8 + 8 + 4 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// keyPrefix is the prefix of every key of one partition's checkpoints.
func keyPrefix(group, topic string, partition int32) string {
	return keyRoot + url.PathEscape(group) + "/" + topic + "/" + strconv.Itoa(int(partition)) + "/"
}

func chunkKey(prefix string, nonce uint64, index int) []byte {
	return fmt.Appendf(nil, "%s%016x/%d", prefix, nonce, index)
}

func manifestKey(prefix string, nonce uint64) []byte {
	return fmt.Appendf(nil, "%s%016x/m", prefix, nonce)
}

// ref names one checkpoint's records: its nonce and chunk count.
type ref struct {
	nonce  uint64
	chunks uint32
}

// keys returns the keys of every record of the checkpoint.
func (r ref) keys(prefix string) [][]byte {
	if r.nonce == 0 {
		return nil
	}
	keys := make([][]byte, 0, r.chunks+1)
	for i := range int(r.chunks) {
		keys = append(keys, chunkKey(prefix, r.nonce, i))
	}
	return append(keys, manifestKey(prefix, r.nonce))
}

// parseKey splits a key of prefix into its nonce and part: a chunk index,
// or -1 for the manifest. ok is false for keys of other partitions,
// groups or topics.
func parseKey(prefix string, key []byte) (nonce uint64, index int, ok bool) {
	rest, found := bytes.CutPrefix(key, []byte(prefix))
	if !found || len(rest) < 18 || rest[16] != '/' {
		return 0, 0, false
	}
	nonce, err := strconv.ParseUint(string(rest[:16]), 16, 64)
	if err != nil {
		return 0, 0, false
	}
	part := string(rest[17:])
	if part == "m" {
		return nonce, -1, true
	}
	index, err = strconv.Atoi(part)
	return nonce, index, err == nil && index >= 0
}

func appendChunk(b []byte, nonce uint64, index uint32, payload []byte) []byte {
	b = append(b, chunkMagic...)
	b = binary.BigEndian.AppendUint16(b, formatVersion)
	b = binary.BigEndian.AppendUint64(b, nonce)
	b = binary.BigEndian.AppendUint32(b, index)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
	return append(b, payload...)
}

// parseChunk checks a chunk and returns its payload (a slice of v).
func parseChunk(v []byte, nonce uint64, index uint32) ([]byte, error) {
	if len(v) < chunkHeader || string(v[:len(chunkMagic)]) != chunkMagic {
		return nil, fmt.Errorf("%w: chunk %d is not a checkpoint chunk", engine.ErrCorruptCheckpoint, index)
	}
	h := v[len(chunkMagic):]
	if version := binary.BigEndian.Uint16(h); version != formatVersion {
		return nil, fmt.Errorf("%w: chunk %d has version %d, this Pulse reads %d", engine.ErrCorruptCheckpoint, index, version, formatVersion)
	}
	if n, i := binary.BigEndian.Uint64(h[2:]), binary.BigEndian.Uint32(h[10:]); n != nonce || i != index {
		return nil, fmt.Errorf("%w: chunk %d holds chunk %d of checkpoint %016x", engine.ErrCorruptCheckpoint, index, i, n)
	}
	payload := v[chunkHeader:]
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(h[14:]) {
		return nil, fmt.Errorf("%w: chunk %d fails its checksum", engine.ErrCorruptCheckpoint, index)
	}
	return payload, nil
}

// manifest says which chunks make a checkpoint and how to check them.
type manifest struct {
	partition int32
	ref
	size  uint64 // bytes of the checkpoint
	crc   uint32 // crc32c of the checkpoint
	first int64  // changelog offset of chunk 0
	prev  ref    // the checkpoint this one replaces

	offset int64 // where it was read; not stored
}

func (m *manifest) append(b []byte) []byte {
	start := len(b)
	b = append(b, manifestMagic...)
	b = binary.BigEndian.AppendUint16(b, formatVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(m.partition))
	b = binary.BigEndian.AppendUint64(b, m.nonce)
	b = binary.BigEndian.AppendUint32(b, m.chunks)
	b = binary.BigEndian.AppendUint64(b, m.size)
	b = binary.BigEndian.AppendUint32(b, m.crc)
	b = binary.BigEndian.AppendUint64(b, uint64(m.first))
	b = binary.BigEndian.AppendUint64(b, m.prev.nonce)
	b = binary.BigEndian.AppendUint32(b, m.prev.chunks)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

func parseManifest(v []byte) (manifest, error) {
	var m manifest
	if len(v) < len(manifestMagic)+2 || string(v[:len(manifestMagic)]) != manifestMagic {
		return m, fmt.Errorf("%w: not a checkpoint manifest", engine.ErrCorruptCheckpoint)
	}
	if version := binary.BigEndian.Uint16(v[len(manifestMagic):]); version != formatVersion {
		return m, fmt.Errorf("%w: manifest version %d, this Pulse reads %d", engine.ErrCorruptCheckpoint, version, formatVersion)
	}
	if len(v) != manifestSize || crc32.Checksum(v[:len(v)-4], castagnoli) != binary.BigEndian.Uint32(v[len(v)-4:]) {
		return m, fmt.Errorf("%w: manifest fails its checksum", engine.ErrCorruptCheckpoint)
	}
	h := v[len(manifestMagic)+2:]
	m.partition = int32(binary.BigEndian.Uint32(h))
	m.nonce = binary.BigEndian.Uint64(h[4:])
	m.chunks = binary.BigEndian.Uint32(h[12:])
	m.size = binary.BigEndian.Uint64(h[16:])
	m.crc = binary.BigEndian.Uint32(h[24:])
	m.first = int64(binary.BigEndian.Uint64(h[28:]))
	m.prev.nonce = binary.BigEndian.Uint64(h[36:])
	m.prev.chunks = binary.BigEndian.Uint32(h[44:])
	return m, nil
}
