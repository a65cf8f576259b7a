//! Segments: the fixed-size, mmap'd, append-only files a shard log is made of.
//!
//! Design notes:
//! - A segment file is pre-sized to its maximum size with `posix_fallocate` (so a full disk
//!   is an error at creation, not a failed write later), and its pages are faulted into the
//!   page cache (`MADV_POPULATE_READ`) on a background thread: touching fresh pages costs a
//!   fault per 4 KiB, about ten times the copy on our 2-core machine.
//! - Mapped pages are the process's resident memory, so the mapping keeps only what readers
//!   touched lately: the pre-faulted pages are unmapped again right away (they stay in the
//!   page cache), and [`SegmentMap::release_pages`] unmaps what readers faulted in, when the
//!   server's housekeeping asks. Without it the server held every stored byte resident
//!   (3.1 GiB after 2.5 GB stored).
//! - Segments are mapped read-only; the writer copies frames in with `pwrite`, one call per
//!   batch. Measured here with another thread of the process busy: writing through a shared
//!   writable mapping and syncing it ran at about 200 MB/s, because every page a sync cleans
//!   is write-protected again with a TLB-shootdown interrupt to the other core (a VM exit);
//!   `pwrite` into the same pre-faulted pages plus `fdatasync` ran at 650-730 MB/s.
//! - A segment is named `<first sequence number, 20 digits>.seg`; a segment being prepared is
//!   `next.seg.prealloc` until it is given its header and renamed.
//! - A record never spans segments.
//! - An [`ActiveSegment`] is writable and owned by the shard's single writer. Sealing
//!   consumes it and yields a [`SealedSegment`], which has no way to write.
//! - Bytes below a segment's published end are never written again; readers map the same
//!   pages and read only below the end the writer has published.
//!
//! Header layout (all integers little-endian):
//!
//! | offset | size | field                                   |
//! |--------|------|-----------------------------------------|
//! | 0      | 8    | magic, `SLUICESG`                       |
//! | 8      | 4    | format version (`u32`, 1)               |
//! | 12     | 4    | reserved, zero                          |
//! | 16     | 8    | first sequence number (`u64`)           |
//! | 24     | 4    | reserved, zero                          |
//! | 28     | 4    | CRC32 of bytes 0..28 (`u32`)            |
//!
//! Frames follow from byte 32; their layout is in [`crate::frame`].

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use std::os::unix::fs::FileExt;

use memmap2::{Advice, MmapOptions, MmapRaw, UncheckedAdvice};

use crate::error::{Corruption, FrameDefect, IoError};
use crate::frame::{self, Decoded};
use crate::index::{IndexEntry, IndexSampler, SparseIndex};
use crate::index_file::{self, SegmentSummary};

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + 8;
const FIRST_SEQ_OFFSET: usize = VERSION_OFFSET + 8;
const HEADER_CRC_OFFSET: usize = FIRST_SEQ_OFFSET + 12;
/// Bytes of the segment header; the first frame starts here.
pub const HEADER_BYTES: usize = HEADER_CRC_OFFSET + 4;
const _: () = assert!(HEADER_BYTES == 32);

const MAGIC: [u8; 8] = *b"SLUICESG";
/// Version of the segment and frame layout written by this build.
pub const FORMAT_VERSION: u32 = 1;

const PREALLOC_NAME: &str = "next.seg.prealloc";
const PAGE_BYTES: usize = 4096;

/// The file name of the segment whose first sequence number is `first_sequence_number`.
pub fn file_name(first_sequence_number: u64) -> String {
    format!("{first_sequence_number:020}.seg")
}

/// The first sequence number a segment file name carries, if it is a segment's name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    parse_numbered_name(name, ".seg")
}

/// The number of a shard file named by 20 digits and `suffix` (segments and their index
/// files are named by their first sequence number).
pub(crate) fn parse_numbered_name(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// Whether `name` is a half-prepared segment left by an earlier run.
pub fn is_prealloc_name(name: &str) -> bool {
    name == PREALLOC_NAME
}

fn encode_header(first_sequence_number: u64) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[MAGIC_OFFSET..MAGIC_OFFSET + 8].copy_from_slice(&MAGIC);
    h[VERSION_OFFSET..VERSION_OFFSET + 4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[FIRST_SEQ_OFFSET..FIRST_SEQ_OFFSET + 8].copy_from_slice(&first_sequence_number.to_le_bytes());
    let crc = crc32fast::hash(&h[..HEADER_CRC_OFFSET]);
    h[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn check_header(h: &[u8], first_sequence_number: u64) -> Result<(), FrameDefect> {
    if h.len() < HEADER_BYTES {
        return Err(FrameDefect::BadHeader("file shorter than a header"));
    }
    if h[MAGIC_OFFSET..MAGIC_OFFSET + 8] != MAGIC {
        return Err(FrameDefect::BadHeader("magic is not SLUICESG"));
    }
    let stored = u32::from_le_bytes(h[HEADER_CRC_OFFSET..HEADER_BYTES].try_into().expect("4 bytes"));
    if stored != crc32fast::hash(&h[..HEADER_CRC_OFFSET]) {
        return Err(FrameDefect::BadHeader("header checksum mismatch"));
    }
    let version = u32::from_le_bytes(h[VERSION_OFFSET..VERSION_OFFSET + 4].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(FrameDefect::BadHeader("unknown format version"));
    }
    let header = u64::from_le_bytes(h[FIRST_SEQ_OFFSET..FIRST_SEQ_OFFSET + 8].try_into().expect("8 bytes"));
    if header != first_sequence_number {
        return Err(FrameDefect::HeaderNameMismatch { header, file_name: first_sequence_number });
    }
    Ok(())
}

/// The read-only mapping of one segment file, shared by its writer, the syncer and readers.
///
/// Readers need only the mapping. The file descriptor, for writes and syncs, is opened on
/// demand and closed again by [`SegmentMap::close_idle_file`] once unused, so idle shards
/// and sealed segments hold no descriptor (a default `ulimit -n` of 1,024 stopped the
/// server near 1,000 shards when each held one; issue 17).
#[derive(Debug)]
pub struct SegmentMap {
    map: MmapRaw,
    file: Mutex<Option<Arc<File>>>,
    path: PathBuf,
    /// Whether pages may have been mapped in since the last [`SegmentMap::release_pages`].
    touched: AtomicBool,
    /// Whether the file was written or synced since the last [`SegmentMap::close_idle_file`].
    file_used: AtomicBool,
    /// Whether frames were written since the last sync: such a file stays open, so its sync
    /// never depends on opening it again (which fails when descriptors run out).
    unsynced: AtomicBool,
    /// End of the frames the segment's index file describes ([`crate::index_file`]), 0
    /// when it has none.
    indexed_to: AtomicUsize,
    /// Held while the index file is written; `true` once the segment was retired by a
    /// truncation ([`SegmentMap::retire`]), after which its index file is never written.
    index_writes: Mutex<bool>,
}

impl SegmentMap {
    fn new(map: MmapRaw, file: Option<File>, path: PathBuf) -> Self {
        Self {
            map,
            file: Mutex::new(file.map(Arc::new)),
            path,
            touched: AtomicBool::new(false),
            file_used: AtomicBool::new(true),
            unsynced: AtomicBool::new(false),
            indexed_to: AtomicUsize::new(0),
            index_writes: Mutex::new(false),
        }
    }

    /// End of the frames the segment's index file describes (byte offset), 0 when it has none.
    pub fn indexed_to(&self) -> usize {
        self.indexed_to.load(Ordering::Relaxed)
    }

    /// Writes (or replaces) the segment's index file with `summary`, which must describe
    /// durable frames. A failure is logged and left for a later call: without the file the
    /// next open scans more of the segment, losing nothing.
    pub fn write_index(&self, summary: &SegmentSummary) {
        let retired = self.index_writes.lock().unwrap_or_else(PoisonError::into_inner);
        if *retired {
            return;
        }
        match index_file::write(&self.path, summary, self.capacity()) {
            Ok(()) => self.indexed_to.store(summary.end, Ordering::Relaxed),
            // The directory is gone: the stream was deleted while its logs were open, and
            // there is nothing left to index.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.path.exists() => {}
            Err(e) => tracing::warn!(path = %self.path.display(), error = %e,
                "cannot write a segment's index file; the next open scans the segment"),
        }
    }

    /// The segment's index file when it checks out against the segment, else `None`
    /// (logged when a file was there but is not trusted).
    fn load_index(&self, first_sequence_number: u64, bytes: &[u8]) -> Option<SegmentSummary> {
        let path = index_file::path_of(&self.path);
        let summary = match fs::read(&path) {
            Ok(b) => index_file::decode(&b, first_sequence_number, bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(_) => Err("unreadable"),
        };
        match summary {
            Ok(summary) => {
                self.indexed_to.store(summary.end, Ordering::Relaxed);
                Some(summary)
            }
            Err(why) => {
                tracing::warn!(path = %path.display(), why, "index file not trusted; scanning its segment");
                None
            }
        }
    }

    /// Takes the segment out of its log (a truncation removes or replaces its file): its
    /// index file is removed and never written again, since a file of the same name may
    /// take its place. Readers keep the mapping, which still holds what they read.
    ///
    /// Errors: removing the index file failed (one that was not there is fine).
    pub fn retire(&self) -> Result<(), IoError> {
        let mut retired = self.index_writes.lock().unwrap_or_else(PoisonError::into_inner);
        *retired = true;
        let index_path = index_file::path_of(&self.path);
        match fs::remove_file(&index_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(IoError::new(&index_path, e)),
            _ => Ok(()),
        }
    }

    fn file_slot(&self) -> MutexGuard<'_, Option<Arc<File>>> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The open file, opened (read-write) when it was closed. While the caller holds it,
    /// [`SegmentMap::close_idle_file`] leaves it open: a writer takes it before it encodes a
    /// batch, so running out of descriptors fails the batch before anything is written,
    /// instead of failing a write half-way (which would poison the log).
    ///
    /// Errors: the file cannot be opened (descriptors exhausted, file gone).
    pub fn open_file(&self) -> Result<Arc<File>, IoError> {
        self.file().map_err(|e| IoError::new(&self.path, e))
    }

    fn file(&self) -> io::Result<Arc<File>> {
        self.file_used.store(true, Ordering::Relaxed);
        let mut slot = self.file_slot();
        if let Some(f) = &*slot {
            return Ok(f.clone());
        }
        let f = Arc::new(OpenOptions::new().read(true).write(true).open(&self.path)?);
        *slot = Some(f.clone());
        Ok(f)
    }

    /// Closes the file descriptor if nothing wrote or synced through it since the last
    /// call; the next write or sync opens the file again. The mapping stays.
    /// A file held by a writer stays open, and so does one written since its last sync when
    /// `syncs_come` (the log's policy syncs; under `Never` nothing would ever sync it).
    pub fn close_idle_file(&self, syncs_come: bool) {
        if self.file_used.swap(false, Ordering::Relaxed) || (syncs_come && self.unsynced.load(Ordering::Relaxed)) {
            return;
        }
        let mut slot = self.file_slot();
        if slot.as_ref().is_some_and(|f| Arc::strong_count(f) == 1) {
            slot.take();
        }
    }

    /// Whether the segment holds an open file descriptor now.
    pub fn has_open_file(&self) -> bool {
        self.file_slot().is_some()
    }

    /// The segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the mapping (the segment's maximum size), bytes.
    pub fn capacity(&self) -> usize {
        self.map.len()
    }

    /// The bytes below `end`.
    ///
    /// # Safety
    /// `end` must not exceed an end the segment's writer has published (or the caller must
    /// be the only one using the segment), since bytes past it may be under a concurrent write.
    pub unsafe fn published(&self, end: usize) -> &[u8] {
        assert!(end <= self.map.len(), "end {end} past the mapping");
        // A load first: readers on other cores do not take the cache line for writing.
        if !self.touched.load(Ordering::Relaxed) {
            self.touched.store(true, Ordering::Relaxed);
        }
        // SAFETY: the mapping is `map.len()` bytes and lives as long as `self`; the caller
        // promises no write is under way below `end`, and published bytes are never written again.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), end) }
    }

    /// Unmaps the pages readers faulted in since the last call (`MADV_DONTNEED`), so they no
    /// longer count as this process's memory. The bytes stay in the file and usually in the
    /// page cache; the next read maps them again with a minor fault. Cheap when nothing was
    /// read: the call is skipped. A reader that maps pages while this runs may leave them
    /// mapped until the next call after its next read, which costs memory, never data.
    ///
    /// Errors: the `madvise` failure, which changes nothing.
    pub fn release_pages(&self) -> Result<(), IoError> {
        if !self.touched.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        self.unmap_pages()
    }

    /// Unmaps the pages holding bytes `start..end`, as [`SegmentMap::release_pages`] does
    /// for the whole mapping: a reader done with a large read gives its pages back at once
    /// instead of at the next housekeeping pass, so a fast replay does not hold a second's
    /// worth of reads resident. Another reader of the same pages maps them again with a
    /// minor fault. The range is widened to the 64 KiB windows around it, since a page fault
    /// maps the cached pages of its window too (Linux's fault-around).
    ///
    /// Errors: `madvise` failed; nothing changes.
    pub fn release_range(&self, start: usize, end: usize) -> Result<(), IoError> {
        const WINDOW: usize = 64 << 10;
        let start = start / WINDOW * WINDOW;
        let end = end.div_ceil(WINDOW).saturating_mul(WINDOW).min(self.map.len());
        let len = end.saturating_sub(start);
        if len == 0 {
            return Ok(());
        }
        // SAFETY: as in `unmap_pages`: a shared, file-backed mapping this process never
        // writes through loses nothing when its pages are dropped.
        unsafe { self.map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, len) }
            .map_err(|e| IoError::new(&self.path, e))
    }

    fn unmap_pages(&self) -> Result<(), IoError> {
        // SAFETY: the mapping is shared and file-backed, and this process never writes
        // through it, so dropping its pages loses nothing: a later access maps the file's
        // (page cache) bytes again, the same bytes a reader saw before.
        unsafe { self.map.unchecked_advise(UncheckedAdvice::DontNeed) }.map_err(|e| IoError::new(&self.path, e))
    }

    /// Writes the segment's dirty pages back and waits for the device (`fdatasync`). Only
    /// written frames are dirty: pre-faulted pages were read in and stay clean. A file
    /// already deleted (retention) has nothing left to make durable.
    pub fn sync(&self) -> Result<(), IoError> {
        // `fdatasync` flushes the file's dirty pages whichever descriptor wrote them, so a
        // descriptor opened again after an idle close syncs what the old one wrote.
        match self.file() {
            Ok(f) => {
                // Cleared first: a write racing this sync sets it again.
                let was_unsynced = self.unsynced.swap(false, Ordering::Relaxed);
                f.sync_data().map_err(|e| {
                    if was_unsynced {
                        self.unsynced.store(true, Ordering::Relaxed);
                    }
                    IoError::new(&self.path, e)
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(IoError::new(&self.path, e)),
        }
    }

    fn write_at(&self, offset: usize, bytes: &[u8]) -> Result<(), IoError> {
        let written = self.file().and_then(|f| f.write_all_at(bytes, offset as u64));
        // After the write: a sync that clears the flag before this write stays covered.
        self.unsynced.store(true, Ordering::Relaxed);
        written.map_err(|e| IoError::new(&self.path, e))
    }

    /// Writes the header of a segment that holds no frame yet. Unlike frames, it does not
    /// keep the descriptor open for a sync: a header lost to a power cut is rebuilt from the
    /// file name at recovery, and the sync of the first frames covers it (a log that never
    /// takes a record held a descriptor for good; benches/cost_curves.sh).
    fn write_header(&self, first_sequence_number: u64) -> Result<(), IoError> {
        self.file()
            .and_then(|f| f.write_all_at(&encode_header(first_sequence_number), 0))
            .map_err(|e| IoError::new(&self.path, e))
    }
}

/// Where recovery stopped reading a segment, and what it built on the way.
#[derive(Debug)]
pub struct Scan {
    /// Byte offset just past the last good frame.
    pub end: usize,
    /// Sequence number of the last good frame, or `None` when the segment holds none.
    pub last_sequence_number: Option<u64>,
    /// Arrival timestamp of the first good frame (ms), 0 when there is none.
    pub first_timestamp_ms: u64,
    /// Arrival timestamp of the last good frame (ms), 0 when there is none.
    pub last_timestamp_ms: u64,
    /// Sparse index over the good frames.
    pub index: SparseIndex,
    /// Where the index sampling stands, for frames appended after the scan.
    pub sampler: IndexSampler,
    /// The first bad frame, if the scan stopped at one rather than at a clean end.
    pub defect: Option<(usize, FrameDefect)>,
    /// Bytes of frames read and verified (those the index file described were not).
    pub scanned_bytes: usize,
}

impl Scan {
    /// What the good frames hold, for a segment named for `first_sequence_number`.
    pub fn summary(self, first_sequence_number: u64) -> SegmentSummary {
        SegmentSummary {
            first_sequence_number,
            next_sequence_number: self.last_sequence_number.map_or(first_sequence_number, |l| l + 1),
            end: self.end,
            first_timestamp_ms: self.first_timestamp_ms,
            last_timestamp_ms: self.last_timestamp_ms,
            index: self.index,
        }
    }
}

/// Reads and verifies the frames of a segment named for `first_sequence_number`, from the
/// end of `known` (what its index file describes, trusted) or from the first frame.
pub(crate) fn scan(
    bytes: &[u8],
    first_sequence_number: u64,
    index_interval_bytes: usize,
    known: Option<SegmentSummary>,
) -> Scan {
    let k = known.unwrap_or_else(|| SegmentSummary::empty(first_sequence_number, 0));
    let mut s = Scan {
        end: k.end,
        last_sequence_number: (k.next_sequence_number > first_sequence_number).then(|| k.next_sequence_number - 1),
        first_timestamp_ms: k.first_timestamp_ms,
        last_timestamp_ms: k.last_timestamp_ms,
        sampler: IndexSampler::resume(
            index_interval_bytes,
            k.index.entries().last().map(|e| k.end - e.offset as usize),
        ),
        index: k.index,
        defect: None,
        scanned_bytes: 0,
    };
    let start = s.end;
    let mut expected = s.last_sequence_number.map_or(first_sequence_number, |l| l + 1);
    loop {
        let frame = match frame::decode(&bytes[s.end..]) {
            Ok(Decoded::End) => break,
            Ok(Decoded::Frame(f)) => f,
            Err(defect) => {
                s.defect = Some((s.end, defect));
                break;
            }
        };
        if frame.sequence_number != expected {
            let defect = FrameDefect::UnexpectedSequenceNumber { expected, found: frame.sequence_number };
            s.defect = Some((s.end, defect));
            break;
        }
        if s.last_sequence_number.is_none() {
            s.first_timestamp_ms = frame.arrival_timestamp_ms;
        }
        if s.sampler.sample(frame.len) {
            s.index.push(IndexEntry {
                sequence_number: frame.sequence_number,
                arrival_timestamp_ms: frame.arrival_timestamp_ms,
                offset: s.end as u32,
            });
        }
        s.last_sequence_number = Some(frame.sequence_number);
        s.last_timestamp_ms = frame.arrival_timestamp_ms;
        s.end += frame.len;
        expected += 1;
    }
    s.scanned_bytes = s.end - start;
    s
}

fn open_file(path: &Path, write: bool) -> Result<File, IoError> {
    OpenOptions::new().read(true).write(write).open(path).map_err(|e| IoError::new(path, e))
}

/// A read-only segment: nothing more can be appended.
#[derive(Debug)]
pub struct SealedSegment {
    /// The mapping.
    pub map: Arc<SegmentMap>,
    /// What the frames hold.
    pub summary: SegmentSummary,
    /// Bytes of frames opening read and verified: those its index file did not describe.
    pub scanned_bytes: usize,
}

impl SealedSegment {
    /// Opens a segment that is no longer written: the frames its index file describes, when
    /// the file checks out against the segment (see [`crate::index_file`]), are taken as
    /// they are and verified by the reads that return them; the frames after them (all,
    /// without an index file) are read and verified here, after which the index file is
    /// written for the next open.
    ///
    /// Errors: I/O, or [`Corruption`] naming the file and offset of a bad header or of a bad
    /// frame met by the scan.
    pub fn open(
        path: &Path,
        first_sequence_number: u64,
        index_interval_bytes: usize,
    ) -> Result<Self, crate::OpenError> {
        let file = open_file(path, false)?;
        let map = MmapOptions::new().map_raw_read_only(&file).map_err(|e| IoError::new(path, e))?;
        // The mapping outlives the descriptor: a sealed segment keeps none.
        drop(file);
        // Opening from an index file reads the header and the last index interval only:
        // without this, each fault reads ahead 128 KiB or more of a segment nobody asked for.
        let _ = map.advise(Advice::Random);
        let map = SegmentMap::new(map, None, path.to_owned());
        // SAFETY: nobody writes a sealed segment; this process opened it read-only.
        let bytes = unsafe { map.published(map.capacity()) };
        check_header(bytes, first_sequence_number).map_err(|defect| Corruption {
            path: path.to_owned(),
            offset: 0,
            defect,
        })?;
        let known = map.load_index(first_sequence_number, bytes);
        let scan = scan(bytes, first_sequence_number, index_interval_bytes, known);
        if let Some((offset, defect)) = scan.defect {
            return Err(Corruption { path: path.to_owned(), offset: offset as u64, defect }.into());
        }
        let scanned_bytes = scan.scanned_bytes;
        let summary = scan.summary(first_sequence_number);
        if map.indexed_to() != summary.end {
            map.write_index(&summary);
        }
        // Readers mostly read on: let their faults read ahead again.
        let _ = map.map.advise(Advice::Normal);
        map.release_pages()?;
        Ok(Self { map: Arc::new(map), summary, scanned_bytes })
    }
}

/// End of the last page after `from` holding a non-zero byte, if any. Only the regions the
/// file system reports as data are read (`SEEK_DATA`/`SEEK_HOLE`): a hole reads as zeros by
/// definition, and the never-written rest of a preallocated segment is one after a reboot,
/// so a restart does not read up to 64 MiB of zeros per shard from disk (issue 17). Where
/// the file system cannot tell, everything after `from` is read.
fn last_written_page_end(file: &File, bytes: &[u8], from: usize) -> Option<usize> {
    let capacity = bytes.len();
    let mut last = None;
    let mut scan_region = |start: usize, end: usize| {
        // An OR over the page, without an early exit, is vectorized: 10-20x the speed of
        // `any` on a 64 MiB segment's zeros.
        if let Some(i) = bytes[start..end].chunks(PAGE_BYTES).rposition(|page| page.iter().fold(0, |a, &b| a | b) != 0)
        {
            last = Some((start + (i + 1) * PAGE_BYTES).min(end));
        }
    };
    let seek = |offset: usize, whence: libc::c_int| {
        // SAFETY: plain syscall on an open descriptor.
        let at = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) };
        if at < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok((at as usize).min(capacity))
        }
    };
    let mut at = from;
    while at < capacity {
        let data = match seek(at, libc::SEEK_DATA) {
            Ok(data) => data,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
            Err(_) => {
                scan_region(at, capacity);
                break;
            }
        };
        let hole = seek(data, libc::SEEK_HOLE).unwrap_or(capacity).max(data);
        scan_region(data.max(from), hole);
        at = hole.max(at + 1);
    }
    last
}

/// What recovery discarded from the tail of the active segment.
#[derive(Debug, Clone)]
pub struct TornTail {
    /// The active segment file.
    pub path: PathBuf,
    /// Byte offset where the discarded bytes began (the end of the last good frame).
    pub offset: u64,
    /// How many bytes past that offset were non-zero and have been zeroed.
    pub discarded_bytes: u64,
    /// What was wrong with the first discarded frame, if it looked like a frame at all.
    pub defect: Option<FrameDefect>,
}

/// The writable segment at the head of a shard log, owned by its single writer.
#[derive(Debug)]
pub struct ActiveSegment {
    map: Arc<SegmentMap>,
    first_sequence_number: u64,
    /// End of the frames written to the file.
    write_offset: usize,
    /// Frames encoded since the last write, bound for the file at `write_offset`.
    pending: Vec<u8>,
}

impl ActiveSegment {
    /// Reopens the last segment of a shard after a restart or crash.
    ///
    /// A header that was never written back (all zeros) is rewritten from the file name. A
    /// bad frame ends the segment: everything from it on is a torn tail of writes that were
    /// never acknowledged as durable, and is zeroed. Stray non-zero bytes after a clean end
    /// (pages written back out of order before a crash) are zeroed too, so a later append
    /// cannot be followed by a stale frame that still checks out.
    pub fn recover(
        path: &Path,
        first_sequence_number: u64,
        index_interval_bytes: usize,
    ) -> Result<(Self, Scan, Option<TornTail>), crate::OpenError> {
        let file = open_file(path, true)?;
        let map = MmapOptions::new().map_raw_read_only(&file).map_err(|e| IoError::new(path, e))?;
        let map = SegmentMap::new(map, Some(file), path.to_owned());
        let capacity = map.capacity();
        let corrupt = |offset: usize, defect| Corruption { path: path.to_owned(), offset: offset as u64, defect };
        if capacity < HEADER_BYTES {
            return Err(corrupt(0, FrameDefect::BadHeader("file shorter than a header")).into());
        }
        // SAFETY: the shard log is being opened, so no one else writes this segment; this
        // function's own writes go through the file and are not overlapped by a live slice.
        let header_zero = unsafe { map.published(HEADER_BYTES) }.iter().all(|&b| b == 0);
        if header_zero {
            map.write_at(0, &encode_header(first_sequence_number))?;
        }
        // SAFETY: as above.
        let bytes = unsafe { map.published(capacity) };
        check_header(bytes, first_sequence_number).map_err(|defect| corrupt(0, defect))?;
        let known = map.load_index(first_sequence_number, bytes);
        let scan = scan(bytes, first_sequence_number, index_interval_bytes, known);
        let file = map.open_file()?;
        let stale_end = last_written_page_end(&file, bytes, scan.end);
        drop(file);
        let torn = match stale_end {
            Some(stale_end) => {
                map.write_at(scan.end, &vec![0; stale_end - scan.end])?;
                Some(TornTail {
                    path: path.to_owned(),
                    offset: scan.end as u64,
                    discarded_bytes: (stale_end - scan.end) as u64,
                    defect: scan.defect.map(|(_, d)| d),
                })
            }
            None => None,
        };
        map.sync()?;
        map.release_pages()?;
        let active = Self { map: Arc::new(map), first_sequence_number, write_offset: scan.end, pending: Vec::new() };
        Ok((active, scan, torn))
    }

    /// The shared mapping.
    pub fn map(&self) -> &Arc<SegmentMap> {
        &self.map
    }

    /// First sequence number of the segment.
    pub fn first_sequence_number(&self) -> u64 {
        self.first_sequence_number
    }

    /// End of the frames written to the file, header included: what to publish once
    /// [`ActiveSegment::write_pending`] has run.
    pub fn write_offset(&self) -> usize {
        self.write_offset
    }

    /// Bytes still free, counting frames encoded but not yet written.
    pub fn remaining(&self) -> usize {
        self.map.capacity() - self.write_offset - self.pending.len()
    }

    /// Encodes one frame after the others if it fits; returns its offset, or `None` when
    /// the segment is full. Nothing reaches the file before [`ActiveSegment::write_pending`].
    pub fn append(
        &mut self,
        sequence_number: u64,
        arrival_timestamp_ms: u64,
        key: &[u8],
        data: &[u8],
    ) -> Option<usize> {
        let len = frame::frame_len(key.len(), data.len());
        if len > self.remaining() {
            return None;
        }
        let start = self.pending.len();
        self.pending.resize(start + len, 0);
        frame::encode(&mut self.pending[start..], sequence_number, arrival_timestamp_ms, key, data);
        Some(self.write_offset + start)
    }

    /// Writes the encoded frames to the file with one `pwrite`, past the published end
    /// where no reader looks.
    pub fn write_pending(&mut self) -> Result<(), IoError> {
        if !self.pending.is_empty() {
            self.map.write_at(self.write_offset, &self.pending)?;
            self.write_offset += self.pending.len();
            self.pending.clear();
        }
        Ok(())
    }

    /// Ends writing; the segment stays mapped for readers. The owner writes pending
    /// frames first.
    pub fn seal(self) -> Arc<SegmentMap> {
        debug_assert!(self.pending.is_empty(), "sealing a segment with unwritten frames");
        self.map
    }
}

/// Pages a segment's preparation faults in before unmapping them again: 2 MiB.
const PREFAULT_CHUNK_BYTES: usize = 2 << 20;

/// A segment file sized, allocated and pre-faulted, waiting for its first sequence number.
#[derive(Debug)]
pub struct PreparedSegment {
    map: SegmentMap,
}

impl PreparedSegment {
    /// Creates `dir/next.seg.prealloc` of `capacity` bytes, allocates its blocks and faults
    /// its pages into the page cache and the mapping. Meant to run off the hot path.
    pub fn create(dir: &Path, capacity: usize) -> Result<Self, IoError> {
        let path = dir.join(PREALLOC_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| IoError::new(&path, e))?;
        // SAFETY: plain syscall on an open descriptor.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, capacity as libc::off_t) };
        if rc != 0 {
            return Err(IoError::new(&path, io::Error::from_raw_os_error(rc)));
        }
        let map = MmapOptions::new().len(capacity).map_raw_read_only(&file).map_err(|e| IoError::new(&path, e))?;
        let map = SegmentMap::new(map, Some(file), path);
        // A chunk at a time, each unmapped again at once: the pages stay in the page cache
        // for the writer (readers map what they read), and the process never holds more
        // than a chunk of them (a whole 64 MiB segment per rolling shard was the peak of
        // an ingest's RSS).
        for start in (0..capacity).step_by(PREFAULT_CHUNK_BYTES) {
            let len = PREFAULT_CHUNK_BYTES.min(capacity - start);
            if let Err(e) = map.map.advise_range(Advice::PopulateRead, start, len) {
                // Kernels before 5.14 lack MADV_POPULATE_READ: the first write to a page faults it in.
                tracing::debug!(error = %e, "MADV_POPULATE_READ unavailable");
                break;
            }
            map.release_range(start, start + len)?;
        }
        Ok(Self { map })
    }

    /// Gives the segment its header and its name in `dir`; the directory entry is durable
    /// only after the directory is synced.
    pub fn activate(self, dir: &Path, first_sequence_number: u64) -> Result<ActiveSegment, IoError> {
        let path = dir.join(file_name(first_sequence_number));
        self.map.write_header(first_sequence_number)?;
        fs::rename(&self.map.path, &path).map_err(|e| IoError::new(&path, e))?;
        Ok(ActiveSegment {
            map: Arc::new(SegmentMap { path, ..self.map }),
            first_sequence_number,
            write_offset: HEADER_BYTES,
            pending: Vec::new(),
        })
    }
}

impl PreparedSegment {
    /// Gives the segment its header and `frames` (the verified frames, after the header, of
    /// a segment starting at `first_sequence_number`), syncs it, and renames it to its name
    /// in `dir`, replacing a file of that name in one step: a crash leaves one file or the
    /// other, whole. The caller syncs the directory. Used by truncation, which must not
    /// write over frames a reader may hold mapped.
    ///
    /// Errors: the frames do not fit, or a write, sync or rename failed (the prepared file
    /// is left for the next open to remove).
    pub fn install(self, dir: &Path, first_sequence_number: u64, frames: &[u8]) -> Result<ActiveSegment, IoError> {
        if HEADER_BYTES + frames.len() > self.map.capacity() {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "frames larger than the segment");
            return Err(IoError::new(&self.map.path, e));
        }
        self.map.write_header(first_sequence_number)?;
        self.map.write_at(HEADER_BYTES, frames)?;
        self.map.sync()?;
        let path = dir.join(file_name(first_sequence_number));
        fs::rename(&self.map.path, &path).map_err(|e| IoError::new(&path, e))?;
        Ok(ActiveSegment {
            map: Arc::new(SegmentMap { path, ..self.map }),
            first_sequence_number,
            write_offset: HEADER_BYTES + frames.len(),
            pending: Vec::new(),
        })
    }
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), IoError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| IoError::new(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_sequence_number() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("42.seg"), None);
        assert_eq!(parse_file_name("0000000000000000004x.seg"), None);
        assert!(file_name(9) < file_name(10));
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = encode_header(7);
        assert_eq!(check_header(&h, 7), Ok(()));
        assert_eq!(check_header(&h, 8), Err(FrameDefect::HeaderNameMismatch { header: 7, file_name: 8 }));
        for i in 0..HEADER_BYTES {
            let mut bad = h;
            bad[i] ^= 0x40;
            assert!(check_header(&bad, 7).is_err(), "damage at byte {i} went unnoticed");
        }
    }
}
