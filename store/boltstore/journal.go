package boltstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"

	"google.golang.org/protobuf/proto"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// The audit journal exists because every read is audited durably before it
// is answered. Committing each group of read events to bbolt wrote about
// seven pages and synced twice, and took half the server's CPU per read.
// Events of calls that change nothing go instead to the journal, a
// preallocated file beside the data file: a group costs one write and one
// fdatasync, and as the file never grows the sync carries no metadata.
//
// The commit loop, the one writer of both files, gives every event its
// sequence number and chain hash whichever way it goes, so the audit log is
// one chain. It moves journalled events into bbolt (audit bucket, per-plan
// index, head hash) in bulk, a checkpoint, at the start of every bbolt
// transaction, when enough have gathered, when the journal is full, before
// the audit log is read or backed up, and on close; then the journal starts
// again from its beginning. Open replays what a crash left.
//
// The file starts with a header: journalMagic and the data file's store id
// (see keyStoreID), then zeros to journalHeader bytes. Each group commit is
// one group: a group header (see sealGroup) and its records. A record is:
// length (4 bytes) | CRC-32C of the event (4 bytes) | the event as
// store.MarshalAudit encodes it (sequence and prev_hash set).
//
// After a rewind, older groups remain behind the new ones. Reading stops at
// the first group that is torn or fails its checksum, or whose first event
// does not carry the next sequence and the hash of the event before it.
// Groups left from before a rewind carry older sequences; a group left from
// a write whose sync failed carries the hash of an event that was never
// kept.
//
// Only the last group can be torn by a crash: the next one is written only
// after its sync. So if an intact group of later events lies beyond a
// damaged one, the damaged one was acknowledged and then damaged on disk.
// Its events are lost; Open refuses to go on without them unless the data
// file already holds them (see after). Journals of format 1, without
// groups, are still read, so a store that crashed under an older build
// recovers.

// JournalSuffix names the audit journal: the data file's path plus this.
const JournalSuffix = ".audit-journal"

const recordHeader = 8

// journalHeader is the size of the file header; records follow it.
const journalHeader = 32

var (
	journalMagic   = []byte("CPAUDJ02")
	journalMagicV1 = []byte("CPAUDJ01") // records without groups
)

func headerFor(storeID []byte) []byte { return header(journalMagic, storeID) }

func header(magic, storeID []byte) []byte {
	h := make([]byte, journalHeader)
	copy(h, magic)
	copy(h[len(magic):], storeID)
	return h
}

// groupHeader is the size of a group's header: the length of its records
// (4 bytes) | how many (4) | the sequence of the first (8) | CRC-32C of
// these 16 bytes and the records (4).
const groupHeader = 20

// startGroup begins a group on buf[:0]; records are appended after it, and
// sealGroup then fills its header in.
func startGroup(buf []byte) []byte { return append(buf[:0], make([]byte, groupHeader)...) }

// sealGroup fills in the header of the group buf holds: count records, the
// first with sequence first.
func sealGroup(buf []byte, count int, first uint64) {
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-groupHeader))
	binary.BigEndian.PutUint32(buf[4:], uint32(count))
	binary.BigEndian.PutUint64(buf[8:], first)
	sum := crc32.Update(crc32.Checksum(buf[:16], castagnoli), castagnoli, buf[groupHeader:])
	binary.BigEndian.PutUint32(buf[16:], sum)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journalRecord is one journalled event, as the checkpoint needs it.
type journalRecord struct {
	seq      uint64
	body     []byte // store.MarshalAudit's bytes
	nhs      string
	prevHash []byte
}

type journal struct {
	f    *os.File
	size int64 // fixed: the file is preallocated and never grows
	off  int64 // where the next record goes
	buf  []byte
	// sync is fdatasync; tests make it fail.
	sync func(*os.File) error
	// failedAt holds where writes failed since the last rewind: each may
	// have left a group that was never acknowledged (see rewind).
	failedAt []int64
}

// openJournal opens the journal at path for the data file with storeID. A
// file of another size or another data file is written out afresh: size
// bytes of zeros under this file's header. Writing real zeros (not
// fallocate) means later writes allocate nothing, so fdatasync has no
// metadata to log. Open has already replayed whatever it held.
func openJournal(path string, size int64, storeID []byte) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit journal: %w", err)
	}
	header := headerFor(storeID)
	got := make([]byte, journalHeader)
	fi, err := f.Stat()
	if err == nil && (fi.Size() != size || readHeader(f, got) != nil || !bytes.Equal(got, header)) {
		err = preallocate(f, size, header)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("prepare audit journal: %w", err)
	}
	return &journal{f: f, size: size, off: journalHeader, sync: fdatasync}, nil
}

func readHeader(f *os.File, buf []byte) error {
	_, err := f.ReadAt(buf, 0)
	return err
}

func preallocate(f *os.File, size int64, header []byte) error {
	if size < journalHeader {
		return fmt.Errorf("journal size %d is below its %d-byte header", size, journalHeader)
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt(header, 0); err != nil {
		return err
	}
	zeros := make([]byte, 1<<20)
	for off := int64(journalHeader); off < size; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros[:min(int64(len(zeros)), size-off)], off); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	// The file's directory entry must be durable too.
	d, err := os.Open(filepath.Dir(f.Name()))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// appendRecord frames body as a journal record onto buf.
func appendRecord(buf, body []byte) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(body)))
	buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(body, castagnoli))
	return append(buf, body...)
}

// write makes buf durable at the current offset; the caller advances it.
func (j *journal) write(buf []byte) error {
	_, err := j.f.WriteAt(buf, j.off)
	if err == nil {
		err = j.sync(j.f)
	}
	if err != nil && !slices.Contains(j.failedAt, j.off) {
		j.failedAt = append(j.failedAt, j.off)
	}
	return err
}

func (j *journal) fits(n int) bool { return j.off+int64(n) <= j.size }

// holds reports whether n bytes of records fit in the journal at all.
func (j *journal) holds(n int) bool { return journalHeader+int64(n) <= j.size }

// rewind starts the journal again from its first record.
//
// A group whose write failed may still be whole on disk, and it carries on
// the chain from the last event kept. Until the next group overwrites its
// place it is harmless, but a rewind moves the next group elsewhere. Read
// from the start after a crash, the old records would run on into it, and
// its events clash with those bbolt has since given the same numbers. And
// if bbolt has given out no numbers since (the commit only checkpointed),
// the search past the end of the chain finds it as the chain's next group
// and replays events whose callers were told UNAVAILABLE. So after a
// failed write, a rewind first zeros the first group header and each failed
// group's, and syncs. If that fails, the journal goes on where it was (its
// records are all in bbolt, so appending is safe) and the next rewind
// tries again.
func (j *journal) rewind() {
	if len(j.failedAt) > 0 {
		zeros := make([]byte, groupHeader)
		_, err := j.f.WriteAt(zeros, journalHeader)
		for _, off := range j.failedAt {
			if err == nil {
				_, err = j.f.WriteAt(zeros, off)
			}
		}
		if err == nil {
			err = j.sync(j.f)
		}
		if err != nil {
			return
		}
		j.failedAt = j.failedAt[:0]
	}
	j.off = journalHeader
}

func (j *journal) Close() error { return j.f.Close() }

// seqRange is the events first up to, not including, end.
type seqRange struct{ first, end uint64 }

// readJournal returns the run of records at the start of the journal at
// path: contiguous sequences, each intact. A missing file holds none, and
// so does one written for another data file. lost lists the events that
// were acknowledged and then damaged (see readGroups); kept is the last
// event the data file holds.
func readJournal(path string, storeID []byte, kept uint64) (recs []journalRecord, lost []seqRange, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read audit journal: %w", err)
	}
	if len(b) < journalHeader {
		return nil, nil, nil
	}
	switch h := b[:journalHeader]; {
	case bytes.Equal(h, headerFor(storeID)):
		recs, lost = readGroups(b[journalHeader:], kept)
		return recs, lost, nil
	case bytes.Equal(h, header(journalMagicV1, storeID)):
		recs, _ = readRecords(b[journalHeader:], nil)
		return recs, nil, nil
	}
	return nil, nil, nil
}

// readGroups reads groups from the start of b while each continues the
// chain. Where the chain ends (a damaged group, zeros, or a group left from
// before a rewind), it looks further on for an intact group of events later
// than any it knows of (kept is the last event the data file holds). Such a
// group was written after every group before it was synced, so the events
// between were acknowledged and then damaged: they are lost, and reading
// goes on from it.
func readGroups(b []byte, kept uint64) (recs []journalRecord, lost []seqRange) {
	last := kept      // the latest event known to have been acknowledged
	afterGap := false // the chain hash cannot be checked across lost events
	for {
		g := parseGroup(b)
		if g.intact && (len(recs) == 0 || afterGap || follows(recs[len(recs)-1], g.first, g.recs[0].prevHash)) {
			recs, afterGap = append(recs, g.recs...), false
			last = max(last, recs[len(recs)-1].seq)
			b = b[g.size:]
			continue
		}
		// An intact group here does not carry on the chain, so the search
		// starts past it.
		from := 0
		if g.intact {
			from = 1
		}
		off, ok := laterGroup(b, from, last)
		if !ok {
			return recs, lost
		}
		// None are lost when the data file holds all before the group.
		if first := parseGroup(b[off:]).first; first > last+1 {
			lost = append(lost, seqRange{last + 1, first})
		}
		afterGap = true
		b = b[off:]
	}
}

// laterGroup finds the first intact group in b, from offset from on, whose
// events come after last. Only its checksum is costly, so headers that
// cannot be right are ruled out first.
func laterGroup(b []byte, from int, last uint64) (int, bool) {
	for off := from; off+groupHeader <= len(b); off++ {
		h := b[off:]
		n, count, first := binary.BigEndian.Uint32(h), binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint64(h[8:])
		if n == 0 || count == 0 || uint64(n) > uint64(len(h)-groupHeader) || first <= last || first-last > uint64(len(b)) {
			continue
		}
		if parseGroup(h).intact {
			return off, true
		}
	}
	return 0, false
}

type journalGroup struct {
	// size is the header's length plus the records', when they fit in the
	// file (else 0); count and first are what the header says.
	size   int
	count  int
	first  uint64
	intact bool
	recs   []journalRecord
}

// parseGroup reads the group at the start of b.
func parseGroup(b []byte) journalGroup {
	if len(b) < groupHeader {
		return journalGroup{}
	}
	n := uint64(binary.BigEndian.Uint32(b))
	g := journalGroup{count: int(binary.BigEndian.Uint32(b[4:])), first: binary.BigEndian.Uint64(b[8:])}
	if n == 0 || n > uint64(len(b)-groupHeader) {
		return g // zeros past the end of what was written, or torn
	}
	g.size = groupHeader + int(n)
	body := b[groupHeader:g.size]
	if crc32.Update(crc32.Checksum(b[:16], castagnoli), castagnoli, body) != binary.BigEndian.Uint32(b[16:]) {
		return g
	}
	recs, rest := readRecords(body, nil)
	if len(rest) > 0 || g.count == 0 || len(recs) != g.count || recs[0].seq != g.first {
		return g
	}
	g.recs, g.intact = recs, true
	return g
}

// readRecords reads the records at the start of b while each is intact and
// follows the one before; rest is what it did not read.
func readRecords(b []byte, out []journalRecord) (recs []journalRecord, rest []byte) {
	for len(b) >= recordHeader {
		n := binary.BigEndian.Uint32(b)
		if n == 0 || uint64(n) > uint64(len(b)-recordHeader) {
			break // zeros past the end of what was written, or torn
		}
		body := b[recordHeader : recordHeader+n]
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[4:]) {
			break
		}
		ev := &careplanv1.AuditEvent{}
		if proto.Unmarshal(body, ev) != nil {
			break
		}
		seq := uint64(ev.GetSequence())
		if len(out) > 0 && !follows(out[len(out)-1], seq, ev.GetPrevHash()) {
			break // a record left from before the last rewind, or from a failed write
		}
		out = append(out, journalRecord{seq: seq, body: bytes.Clone(body), nhs: ev.GetNhsNumber(), prevHash: ev.GetPrevHash()})
		b = b[recordHeader+n:]
	}
	return out, b
}

// follows reports whether an event with seq and prevHash comes right after
// prev in the chain.
func follows(prev journalRecord, seq uint64, prevHash []byte) bool {
	sum := sha256.Sum256(prev.body)
	return seq == prev.seq+1 && bytes.Equal(prevHash, sum[:])
}

// after returns the records that follow sequence seq with chain head head,
// or an error if the journal holds later events that do not continue it (a
// data file restored from a backup beside a newer journal, say), or lost
// events the data file lacks.
func after(recs []journalRecord, lost []seqRange, seq uint64, head []byte) ([]journalRecord, error) {
	for _, l := range lost {
		if l.end > seq+1 {
			return nil, fmt.Errorf("audit journal is damaged: events %d to %d were acknowledged, but their records no longer read back, and the data file ends at event %d. Restore the data file and its %s file from a backup; or, to go on without those events, move the %s file aside (the audit chain then carries on from event %d)", max(l.first, seq+1), l.end-1, seq, JournalSuffix, JournalSuffix, seq)
		}
	}
	for i, r := range recs {
		if r.seq <= seq {
			continue
		}
		if r.seq != seq+1 || !bytes.Equal(r.prevHash, head) {
			return nil, fmt.Errorf("audit journal event %d does not continue the audit chain of the data file, which ends at %d: was the data file restored without removing the old %s file?", r.seq, seq, JournalSuffix)
		}
		return recs[i:], nil
	}
	return nil, nil
}
