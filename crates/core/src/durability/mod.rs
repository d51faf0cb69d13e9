//! Write-ahead log and snapshots under `--data-dir`.
//!
//! Every accepted event (the validated interaction, without its text, plus the sentiment assigned to
//! it, so replay does not depend on the model) is appended to `wal.log` before the call that carried
//! it is answered. Both files start with an 8-byte header, `RPWL` and the format version (u32 LE;
//! [`FORMAT_VERSION`]); files without it are format 0, read as they are and rewritten in the current
//! format at start; a newer version is refused with a message. After the header, records are framed
//! as `len: u32 LE | crc32: u32 LE | payload` (payload: a [`WalRecord`], this module's own protobuf
//! message, never the public proto: see [`record`]). On start `snapshot.bin` (same framing, written atomically by rename) is loaded,
//! then `wal.log` is replayed; a torn last record (short, or failing its checksum at the end of the
//! file) is cut off and nothing else is discarded: a bad record followed by more data is corruption
//! and stops the start with an error. A snapshot folds the log into `snapshot.bin` and truncates
//! the log. Only accepted events are logged (never duplicates), so the files hold each event once;
//! replay goes through `Store::apply`, which is idempotent on event id anyway.
//!
//! Writes and fsyncs happen on one `wal-writer` thread, never on an async worker: callers enqueue a
//! record ([`Wal::enqueue`]) and get a [`Durable`] to wait on. The writer takes everything queued
//! (up to [`MAX_GROUP_RECORDS`]), writes it in one call, fsyncs once (group commit) and answers each
//! waiter in order, so concurrent streams share fsyncs and a stalled disk stalls only the calls that
//! wait for it (health, queries and metrics keep answering). Readers can see an event in memory a
//! moment before it is durable; nothing is acknowledged before.
//!
//! On a log write or fsync error the process stops (abort) rather than answer for an event it could
//! not make durable: the caller sees the connection drop, never an acknowledgement.

use crate::domain::Interaction;
use crate::sentiment::{Sentiment, SentimentLabel};
use crate::telemetry;
use anyhow::Context;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAL_FILE: &str = "wal.log";
const SNAPSHOT_FILE: &str = "snapshot.bin";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
/// First bytes of every file in the current format. Read as a format-0 record length (u32 LE) it
/// would claim ~1.4 GB, more than `MAX_RECORD_BYTES`, so no format-0 file can start with it.
pub const FORMAT_MAGIC: [u8; 4] = *b"RPWL";
/// The format this build writes (1: the header; records as in format 0).
pub const FORMAT_VERSION: u32 = 1;
/// Header length: magic and version.
pub const HEADER_BYTES: usize = 8;

/// The header of a file in the current format.
fn format_header() -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[..4].copy_from_slice(&FORMAT_MAGIC);
    header[4..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// The framed records of a file and its format version: after the header, or the whole file for
/// format 0 (no header). An empty file, or one cut inside its header (a crash while creating it),
/// holds no records. A version newer than this build's is refused, naming the file.
fn file_body<'a>(data: &'a [u8], path: &Path) -> anyhow::Result<(&'a [u8], u32)> {
    let prefix = &data[..data.len().min(FORMAT_MAGIC.len())];
    if !FORMAT_MAGIC.starts_with(prefix) {
        return Ok((data, 0));
    }
    if data.len() < HEADER_BYTES {
        return Ok((&[], FORMAT_VERSION));
    }
    let version = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    if version > FORMAT_VERSION {
        anyhow::bail!(
            "{} is in data format {version}, written by a newer rapport; this build reads \
             formats 0 to {FORMAT_VERSION}: run the newer rapport on this directory",
            path.display()
        );
    }
    Ok((&data[HEADER_BYTES..], version))
}

/// Largest payload a record may claim; anything larger is a torn or corrupt length.
const MAX_RECORD_BYTES: u32 = 16 * 1024 * 1024;

pub mod record;

pub use crate::config::{DurabilityConfig, FsyncPolicy};

/// One logged event.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WalRecord {
    /// The event, without its text.
    #[prost(message, optional, tag = "1")]
    pub interaction: Option<record::LoggedInteraction>,
    /// Whether `label`, `score` and `confidence` hold the event's sentiment.
    #[prost(bool, tag = "2")]
    pub has_sentiment: bool,
    /// 0 negative, 1 neutral, 2 positive.
    #[prost(int32, tag = "3")]
    pub label: i32,
    /// Sentiment polarity in [-1, 1] (0 without sentiment).
    #[prost(float, tag = "4")]
    pub score: f32,
    /// Sentiment confidence in [0, 1] (0 without sentiment).
    #[prost(float, tag = "5")]
    pub confidence: f32,
    /// The record carries a refined sentiment for an event logged before it (a queued backend's
    /// later answer), not a new event.
    #[prost(bool, tag = "6")]
    pub refines: bool,
}

impl WalRecord {
    /// The record of an accepted event (its text is dropped: the sentiment stands for it).
    pub fn new(interaction: &Interaction, sentiment: Option<Sentiment>) -> Self {
        let message = record::LoggedInteraction::from_interaction(interaction);
        Self {
            interaction: Some(message),
            has_sentiment: sentiment.is_some(),
            label: sentiment.map_or(1, |s| match s.label {
                SentimentLabel::Negative => 0,
                SentimentLabel::Neutral => 1,
                SentimentLabel::Positive => 2,
            }),
            score: sentiment.map_or(0.0, |s| s.score),
            confidence: sentiment.map_or(0.0, |s| s.confidence),
            refines: false,
        }
    }

    /// The record of a refined sentiment for an event already logged.
    pub fn refinement(interaction: &Interaction, sentiment: Sentiment) -> Self {
        Self {
            refines: true,
            ..Self::new(interaction, Some(sentiment))
        }
    }

    fn decode_event(self) -> anyhow::Result<(Interaction, Option<Sentiment>, bool)> {
        let refines = self.refines;
        let message = self.interaction.context("record without interaction")?;
        let interaction = message
            .into_interaction()
            .map_err(|error| anyhow::anyhow!("invalid logged event: {error}"))?;
        let sentiment = self.has_sentiment.then_some(Sentiment {
            label: match self.label {
                0 => SentimentLabel::Negative,
                2 => SentimentLabel::Positive,
                _ => SentimentLabel::Neutral,
            },
            score: self.score,
            confidence: self.confidence,
        });
        Ok((interaction, sentiment, refines))
    }
}

/// Frames one payload: length, CRC32 of the payload, payload.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The records of a framed file: the payloads and the byte length of the valid prefix. A torn last
/// record (incomplete, or failing its checksum and reaching the end of the data) ends the prefix;
/// a bad record with data after it is an error.
pub fn read_frames(data: &[u8]) -> anyhow::Result<(Vec<&[u8]>, usize)> {
    let mut payloads = Vec::new();
    let mut offset = 0usize;
    while offset < data.len() {
        let rest = &data[offset..];
        if rest.len() < 8 {
            break; // torn header
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let end = 8usize.saturating_add(len as usize);
        if len > MAX_RECORD_BYTES || end > rest.len() {
            // A length running past the end is a torn tail only when no more than one record's
            // worth of bytes remains and no valid record follows; otherwise the length itself is
            // damaged (a bit flip) and everything after it would be lost.
            if rest.len() > 8 + MAX_RECORD_BYTES as usize {
                anyhow::bail!(
                    "corrupt record length {len} at byte {offset} with {} bytes after it \
                     (more than one record): refusing to discard them",
                    rest.len()
                );
            }
            if let Some(found) = find_valid_frame(&rest[1..]) {
                anyhow::bail!(
                    "corrupt record length {len} at byte {offset}: a valid record follows at byte \
                     {}: refusing to discard it",
                    offset + 1 + found
                );
            }
            break; // torn last record
        }
        let payload = &rest[8..end];
        // Real records are never empty: a zero length is a hole or garbage, not a record.
        if len == 0 || crc32fast::hash(payload) != crc {
            if (end == rest.len() || rest.iter().all(|&byte| byte == 0))
                && find_valid_frame(&rest[1..]).is_none()
            {
                break; // torn last record, or a zero-filled tail left by a crash
            }
            anyhow::bail!(
                "corrupt record at byte {offset} with {} bytes after it: refusing to discard them",
                rest.len() - end
            );
        }
        payloads.push(payload);
        offset += end;
    }
    Ok((payloads, offset))
}

/// The offset of the first position in `data` where a whole, non-empty record with a matching
/// checksum starts, if any: evidence that damage before it is not a torn tail. Only run on damage.
fn find_valid_frame(data: &[u8]) -> Option<usize> {
    (0..data.len().saturating_sub(8)).find(|&start| {
        let rest = &data[start..];
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        len > 0
            && len <= MAX_RECORD_BYTES as usize
            && 8 + len <= rest.len()
            && crc32fast::hash(&rest[8..8 + len]) == crc
    })
}

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::new();
    match File::open(path) {
        Ok(mut file) => {
            file.read_to_end(&mut data)
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot open {}", path.display()));
        }
    }
    Ok(data)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync directory {}", dir.display()))
}

struct Writer {
    file: File,
    written: u64,
}

/// The files of an open log, shared by the [`Wal`] handle and its writer thread.
struct LogFiles {
    dir: PathBuf,
    policy: FsyncPolicy,
    writer: Mutex<Writer>,
    /// A second handle on the log for fsync, so writers are not held up by it; guards the count
    /// of records known synced.
    syncer: Mutex<(File, u64)>,
    /// (device, inode) of the open log: checked after each fsync and before each snapshot, so a
    /// data directory deleted (or replaced) under the running server stops acknowledgements
    /// instead of writing to a file no restart will find.
    log_identity: (u64, u64),
    /// fsyncs of the log run so far.
    fsyncs: std::sync::atomic::AtomicU64,
}

/// What the writer thread is asked to do: append a framed record, or only answer once
/// everything queued before is durable.
enum Job {
    Append(Vec<u8>),
    Barrier,
}

/// One queued job and who waits for it: `Err` with the log's error when it could not be made
/// durable.
struct Queued {
    job: Job,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Most jobs the writer thread takes into one write (and, with `fsync = "always"`, one fsync).
pub const MAX_GROUP_RECORDS: usize = 4096;

/// A wait until what was queued is durable (written, and fsynced with `fsync = "always"`). The
/// writer answers in queue order, so the last wait of a caller covers all its earlier ones.
/// A write or fsync error stops the process there (see the module docs); the `try_` forms
/// return it instead.
#[must_use = "nothing may be acknowledged before it is durable"]
pub struct Durable(tokio::sync::oneshot::Receiver<Result<(), String>>);

impl Durable {
    /// Waits without holding a runtime worker; stops the process if the log failed.
    pub async fn wait(self) {
        or_abort(self.0.await);
    }

    /// Waits on this thread (outside async code: the blocking pool, tools, tests); stops the
    /// process if the log failed.
    pub fn wait_blocking(self) {
        or_abort(self.0.blocking_recv());
    }

    /// Waits on this thread and returns the log's error, if any.
    pub fn try_wait_blocking(self) -> std::io::Result<()> {
        match self.0.blocking_recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(std::io::Error::other(error)),
            Err(_) => Err(std::io::Error::other("the log writer stopped")),
        }
    }
}

/// The log could not make something durable: stop rather than acknowledge it.
fn or_abort(answer: Result<Result<(), String>, tokio::sync::oneshot::error::RecvError>) {
    let error = match answer {
        Ok(Ok(())) => return,
        Ok(Err(error)) => error,
        Err(_) => "the log writer stopped".to_string(),
    };
    tracing::error!(%error, "write-ahead log failed: stopping");
    std::process::abort();
}

/// The open log of a data directory. Appends go to one writer thread that owns the writes: it
/// takes everything queued while the previous write and fsync ran and makes it durable with one
/// write and one fsync (group commit), then answers each caller, so no fsync ever runs on a
/// runtime worker and concurrent callers share fsyncs.
pub struct Wal {
    files: Arc<LogFiles>,
    queue: Mutex<std::sync::mpsc::Sender<Queued>>,
    /// Held shared by each ingest from the moment its event is applied to the store until it is
    /// queued; taken exclusively by a duplicate, so it is answered only after its first copy is
    /// durable (see [`Wal::wait_for_admitted`]).
    admissions: std::sync::RwLock<()>,
}

/// What start-up recovered.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovered {
    /// Records loaded from the snapshot.
    pub snapshot_records: usize,
    /// Valid records replayed from the log after the snapshot.
    pub log_records: usize,
    /// Bytes of a torn last record cut off the log.
    pub torn_bytes: usize,
}

impl Wal {
    /// Loads the snapshot and replays the log through `apply` (event, sentiment, whether the
    /// record refines an earlier event's sentiment), folds them into a fresh snapshot and opens
    /// an empty log.
    pub fn open(
        config: &DurabilityConfig,
        dir: &Path,
        mut apply: impl FnMut(&Interaction, Option<Sentiment>, bool),
    ) -> anyhow::Result<(Arc<Self>, Recovered)> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
        // Every start writes snapshot.bin before it creates wal.log, and a snapshot is replaced only
        // by rename: a log without a snapshot means the snapshot was lost, and the log alone would
        // start from a silently shortened history.
        if dir.join(WAL_FILE).exists() && !dir.join(SNAPSHOT_FILE).exists() {
            anyhow::bail!(
                "{} is missing while {} exists: the events it held would be lost; restore it \
                 (or remove the log to start empty on purpose)",
                dir.join(SNAPSHOT_FILE).display(),
                dir.join(WAL_FILE).display()
            );
        }
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let snapshot_file = read_file(&snapshot_path)?;
        let (snapshot, snapshot_version) = file_body(&snapshot_file, &snapshot_path)?;
        let snapshot_header = snapshot_file.len() - snapshot.len();
        let (snapshot_payloads, snapshot_valid) = read_frames(snapshot).with_context(|| {
            format!(
                "in {} (byte offsets after its {snapshot_header}-byte header)",
                snapshot_path.display()
            )
        })?;
        if snapshot_valid != snapshot.len() {
            anyhow::bail!(
                "{} is damaged at byte {} (snapshots are written whole, by rename)",
                snapshot_path.display(),
                snapshot_header + snapshot_valid
            );
        }
        let log_path = dir.join(WAL_FILE);
        let log_file = read_file(&log_path)?;
        let (log, log_version) = file_body(&log_file, &log_path)?;
        let log_header = log_file.len() - log.len();
        let (log_payloads, log_valid) = read_frames(log).with_context(|| {
            format!(
                "in {} (byte offsets after its {log_header}-byte header)",
                log_path.display()
            )
        })?;
        if snapshot_version < FORMAT_VERSION || log_version < FORMAT_VERSION {
            tracing::info!(
                snapshot_version,
                log_version,
                to = FORMAT_VERSION,
                "data directory in an older format: rewriting it in the current one"
            );
        }
        let mut recovered = Recovered {
            snapshot_records: snapshot_payloads.len(),
            log_records: log_payloads.len(),
            torn_bytes: log.len() - log_valid,
        };
        for payload in snapshot_payloads.iter().chain(log_payloads.iter()) {
            let record = <WalRecord as prost::Message>::decode(*payload)
                .context("undecodable record with a valid checksum")?;
            let (interaction, sentiment, refines) = record.decode_event()?;
            apply(&interaction, sentiment, refines);
        }
        if recovered.torn_bytes > 0 {
            tracing::warn!(
                bytes = recovered.torn_bytes,
                "discarded a torn last log record"
            );
        }
        // Fold: snapshot + valid log → new snapshot; then the log starts empty.
        let started = Instant::now();
        let mut folded = snapshot.to_vec();
        folded.extend_from_slice(&log[..log_valid]);
        write_snapshot(dir, &folded)?;
        telemetry::snapshot_written(
            Some((HEADER_BYTES + folded.len()) as u64),
            started.elapsed(),
        );
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(dir.join(WAL_FILE))
            .and_then(|mut file| file.write_all(&format_header()).map(|()| file))
            .and_then(|_| {
                // Append mode: after a snapshot truncates the log, writes start at its new end.
                OpenOptions::new().append(true).open(dir.join(WAL_FILE))
            })
            .with_context(|| format!("cannot open {}", dir.join(WAL_FILE).display()))?;
        file.flush()?;
        file.sync_all()?;
        sync_dir(dir)?;
        let sync_handle = file.try_clone()?;
        let log_identity = {
            use std::os::unix::fs::MetadataExt;
            let metadata = file.metadata()?;
            (metadata.dev(), metadata.ino())
        };
        recovered.log_records = log_payloads.len();
        let files = Arc::new(LogFiles {
            dir: dir.to_path_buf(),
            policy: config.fsync,
            writer: Mutex::new(Writer { file, written: 0 }),
            syncer: Mutex::new((sync_handle, 0)),
            log_identity,
            fsyncs: std::sync::atomic::AtomicU64::new(0),
        });
        let (queue, jobs) = std::sync::mpsc::channel();
        let writer_files = Arc::clone(&files);
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || write_groups(&writer_files, &jobs))
            .context("cannot start the log writer thread")?;
        Ok((
            Arc::new(Self {
                files,
                queue: Mutex::new(queue),
                admissions: std::sync::RwLock::new(()),
            }),
            recovered,
        ))
    }

    /// Queues one record for the writer thread; the returned wait ends once it is durable.
    pub fn enqueue(&self, record: &WalRecord) -> Durable {
        self.queue_job(Job::Append(frame(&prost::Message::encode_to_vec(record))))
    }

    fn queue_job(&self, job: Job) -> Durable {
        let (done, durable) = tokio::sync::oneshot::channel();
        let sent = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Queued { job, done });
        if let Err(std::sync::mpsc::SendError(queued)) = sent {
            let _ = queued.done.send(Err("the log writer stopped".to_string()));
        }
        Durable(durable)
    }

    /// Appends one record and waits until it is durable (for callers outside async code);
    /// returns the log's error if it could not be.
    pub fn append(&self, record: &WalRecord) -> std::io::Result<()> {
        self.enqueue(record).try_wait_blocking()
    }

    /// Marks an event as on its way to the log: hold the guard from applying it to the store
    /// until it is queued (see [`Wal::wait_for_admitted`]).
    pub fn admit(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.admissions.read().unwrap_or_else(|e| e.into_inner())
    }

    /// What a duplicate waits for before it is answered, since its first copy may still be on
    /// its way to the disk: waits until every event admitted so far is queued, then returns a
    /// wait that ends once all of it is durable.
    pub fn wait_for_admitted(&self) -> Durable {
        drop(self.admissions.write().unwrap_or_else(|e| e.into_inner()));
        self.queue_job(Job::Barrier)
    }

    /// fsyncs of the log run since it was opened (group commit shares one among many appends).
    pub fn fsyncs_total(&self) -> u64 {
        self.files.fsyncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fsyncs everything written so far.
    pub fn sync(&self) -> std::io::Result<()> {
        self.files.sync()
    }

    /// Fails when `wal.log` in the data directory is no longer the file this process writes (the
    /// directory or the log was deleted or replaced): what is written would not survive a restart.
    pub fn check_log_in_place(&self) -> std::io::Result<()> {
        self.files.check_log_in_place()
    }

    /// Folds the log into the snapshot and truncates the log. Appends wait meanwhile.
    pub fn snapshot(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        let result = self.fold_log_into_snapshot();
        telemetry::snapshot_written(result.as_ref().ok().copied(), started.elapsed());
        result.map(|_size_bytes| ())
    }

    /// [`Wal::snapshot`] without the metrics; returns the new snapshot's size in bytes.
    fn fold_log_into_snapshot(&self) -> anyhow::Result<u64> {
        let files = &self.files;
        let writer = files.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.file.sync_data()?;
        files.check_log_in_place()?;
        let snapshot_path = files.dir.join(SNAPSHOT_FILE);
        let snapshot_file = read_file(&snapshot_path)?;
        let mut folded = file_body(&snapshot_file, &snapshot_path)?.0.to_vec();
        let log_path = files.dir.join(WAL_FILE);
        let log_file = read_file(&log_path)?;
        let (log, _) = file_body(&log_file, &log_path)?;
        let (_, valid) = read_frames(log)?;
        folded.extend_from_slice(&log[..valid]);
        write_snapshot(&files.dir, &folded)?;
        // A crash between the rename and here leaves events in both files: replay is idempotent.
        writer.file.set_len(HEADER_BYTES as u64)?;
        writer.file.sync_all()?;
        Ok((HEADER_BYTES + folded.len()) as u64)
    }
}

impl LogFiles {
    /// Writes `framed` (whole records) at the end of the log; returns the records written so far.
    fn write(&self, framed: &[u8], records: u64) -> std::io::Result<u64> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.file.write_all(framed)?;
        writer.written += records;
        Ok(writer.written)
    }

    fn sync(&self) -> std::io::Result<()> {
        let seq = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .written;
        self.sync_to(seq)
    }

    fn sync_to(&self, seq: u64) -> std::io::Result<()> {
        let mut syncer = self.syncer.lock().unwrap_or_else(|e| e.into_inner());
        if syncer.1 >= seq {
            return Ok(()); // an earlier fsync covered it
        }
        let target = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .written;
        let started = Instant::now();
        syncer.0.sync_data()?;
        self.fsyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        telemetry::wal_fsynced(started.elapsed());
        self.check_log_in_place()?;
        syncer.1 = target;
        Ok(())
    }

    fn check_log_in_place(&self) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let path = self.dir.join(WAL_FILE);
        let in_place = std::fs::metadata(&path)
            .map(|metadata| (metadata.dev(), metadata.ino()) == self.log_identity)
            .unwrap_or(false);
        if in_place {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "{} was deleted or replaced while running: events written now would not survive \
                 a restart",
                path.display()
            )))
        }
    }
}

/// The writer thread: takes what is queued (up to [`MAX_GROUP_RECORDS`]), writes it with one
/// write, fsyncs once with `fsync = "always"`, then answers each job in order. Ends when the
/// [`Wal`] is dropped. After a write or fsync error (or the log found deleted) it answers every
/// job, that one's group included, with the error and writes nothing more: nothing it could not
/// make durable is ever acknowledged.
fn write_groups(files: &LogFiles, jobs: &std::sync::mpsc::Receiver<Queued>) {
    let mut group: Vec<Queued> = Vec::new();
    let mut framed: Vec<u8> = Vec::new();
    let mut failed: Option<String> = None;
    while let Ok(first) = jobs.recv() {
        group.push(first);
        while group.len() < MAX_GROUP_RECORDS {
            match jobs.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        if failed.is_none() {
            framed.clear();
            let mut records = 0u64;
            for queued in &group {
                if let Job::Append(bytes) = &queued.job {
                    framed.extend_from_slice(bytes);
                    records += 1;
                }
            }
            let written = if records > 0 {
                files.write(&framed, records)
            } else {
                Ok(files
                    .writer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .written)
            };
            let durable = written.and_then(|seq| match files.policy {
                FsyncPolicy::Always => files.sync_to(seq),
                FsyncPolicy::Interval => Ok(()),
            });
            match durable {
                Ok(()) => {
                    for queued in &group {
                        if let Job::Append(bytes) = &queued.job {
                            telemetry::wal_appended(bytes.len());
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(%error, records, "write-ahead log failed");
                    failed = Some(error.to_string());
                }
            }
        }
        let answer = failed.clone().map_or(Ok(()), Err);
        for queued in group.drain(..) {
            let _ = queued.done.send(answer.clone());
        }
    }
}

/// Writes the header and the framed records `data` to snapshot.tmp, fsyncs it and renames it over
/// snapshot.bin. On failure the
/// temporary file is removed and the error names the file and keeps the OS error.
fn write_snapshot(dir: &Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(SNAPSHOT_TMP);
    let written = File::create(&tmp)
        .and_then(|mut file| {
            file.write_all(&format_header())?;
            file.write_all(data)?;
            file.sync_all()
        })
        .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE)).map_err(|error| {
                anyhow::anyhow!(
                    "cannot rename {} to {}: {error}",
                    tmp.display(),
                    SNAPSHOT_FILE
                )
            })
        });
    if let Err(error) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(error);
    }
    sync_dir(dir)
}

/// Periodic fsync (interval policy) and snapshot tasks; they stop when `stop` turns true.
pub fn spawn_background(
    wal: Arc<Wal>,
    config: &DurabilityConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    if config.fsync == FsyncPolicy::Interval {
        let wal = Arc::clone(&wal);
        let mut stop = stop.clone();
        let period = Duration::from_millis(config.fsync_interval_ms);
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                let wal = Arc::clone(&wal);
                if let Ok(Err(error)) = tokio::task::spawn_blocking(move || wal.sync()).await {
                    tracing::error!(%error, "write-ahead log fsync failed: stopping");
                    std::process::abort();
                }
            }
            let _ = tokio::task::spawn_blocking(move || wal.sync()).await;
        }));
    }
    if config.snapshot_interval_seconds > 0 {
        let mut stop = stop;
        let period = Duration::from_secs(config.snapshot_interval_seconds);
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                let wal = Arc::clone(&wal);
                match tokio::task::spawn_blocking(move || wal.snapshot()).await {
                    Ok(Ok(())) => tracing::info!("snapshot written, log truncated"),
                    Ok(Err(error)) => {
                        let error = format!("{error:#}");
                        tracing::error!(%error, "snapshot failed; the log keeps growing")
                    }
                    Err(error) => tracing::error!(%error, "snapshot task failed"),
                }
            }
        }));
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_versions_are_told_apart() {
        let path = Path::new("wal.log");
        let mut current = format_header().to_vec();
        current.extend(frame(b"one"));
        assert_eq!(file_body(&current, path).unwrap(), (&frame(b"one")[..], 1));
        let legacy = frame(b"one");
        assert_eq!(file_body(&legacy, path).unwrap(), (&legacy[..], 0));
        // Empty, or cut inside the header: no records.
        for cut in 0..HEADER_BYTES {
            assert_eq!(file_body(&current[..cut], path).unwrap().0, &[] as &[u8]);
        }
        // A format-0 file shorter than a header is format 0 (a torn first record).
        assert_eq!(file_body(&legacy[..3], path).unwrap(), (&legacy[..3], 0));
        let mut newer = current.clone();
        newer[4] = 2;
        let error = file_body(&newer, path).unwrap_err().to_string();
        assert!(
            error.contains("format 2") && error.contains("wal.log"),
            "{error}"
        );
    }

    #[test]
    fn torn_tail_is_cut_and_mid_corruption_refused() {
        let mut data = frame(b"one");
        data.extend(frame(b"two"));
        let whole = data.len();
        let (payloads, valid) = read_frames(&data).unwrap();
        assert_eq!((payloads.len(), valid), (2, whole));
        // Every truncation inside the last record keeps exactly the first.
        for cut in (whole - 11 + 1)..whole {
            let (payloads, valid) = read_frames(&data[..cut]).unwrap();
            assert_eq!(payloads, vec![&b"one"[..]]);
            assert_eq!(valid, 11);
        }
        // A flipped byte in the last record: torn tail.
        let mut flipped = data.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(read_frames(&flipped).unwrap().0.len(), 1);
        // A flipped byte in the first record with a good one after: an error, nothing dropped.
        let mut corrupt = data.clone();
        corrupt[9] ^= 1;
        assert!(read_frames(&corrupt).is_err());
        // Zeros (a hole) are never records.
        let mut holed = vec![0u8; 16];
        holed.extend(frame(b"one"));
        assert!(read_frames(&holed).is_err());
        assert_eq!(read_frames(&[0u8; 16]).unwrap(), (vec![], 0));
    }

    /// D3: a bit flip in a middle record's length field (pointing past the end) was taken for a
    /// torn tail and every later record dropped; now it is an error naming the byte.
    #[test]
    fn flipped_length_bit_before_good_records_is_corruption_not_a_torn_tail() {
        let mut data = Vec::new();
        for i in 0..100 {
            data.extend(frame(format!("record {i}").as_bytes()));
        }
        let second = frame(b"record 0").len();
        let mut flipped = data.clone();
        flipped[second + 3] ^= 0x01; // length += 16 MiB: runs past the end
        let error = read_frames(&flipped).unwrap_err().to_string();
        assert!(error.contains(&format!("at byte {second}")), "{error}");
        flipped = data.clone();
        flipped[second + 2] ^= 0x10; // length += 1 MiB: still within the limit, past the end
        assert!(read_frames(&flipped).is_err());
        // A flipped length in the very last record is still a torn tail.
        let last = data.len() - frame(b"record 99").len();
        let mut torn = data.clone();
        torn[last + 2] ^= 0x10;
        assert_eq!(
            read_frames(&torn).unwrap(),
            (read_frames(&data[..last]).unwrap().0, last)
        );
    }

    /// D8: with the data directory deleted and recreated while running, appends went on into the
    /// unlinked log (1,000 of 1,000 acknowledged events lost at restart); now the append fails,
    /// so the event is not acknowledged (the caller aborts), and so does a snapshot.
    #[test]
    fn a_deleted_data_directory_stops_appends_and_snapshots() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let config = DurabilityConfig::default();
        let (wal, _) = Wal::open(&config, &dir, |_, _, _| {}).unwrap();
        let record = WalRecord {
            interaction: Some(record::LoggedInteraction::default()),
            ..WalRecord::default()
        };
        wal.append(&record).expect("the log is in place");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let error = wal.append(&record).unwrap_err().to_string();
        assert!(error.contains(WAL_FILE), "{error}");
        assert!(wal.snapshot().is_err());
        assert!(
            !dir.join(SNAPSHOT_FILE).exists(),
            "no empty snapshot written"
        );
    }

    /// D7: appends queued together share one write and one fsync (each append paid its own
    /// fsync on a runtime worker before), and every one of them is durable once answered.
    #[test]
    fn queued_appends_share_fsyncs_and_all_survive() {
        const RECORDS: usize = 2_000;
        let dir = tempfile::tempdir().unwrap();
        let config = DurabilityConfig::default();
        assert_eq!(config.fsync, FsyncPolicy::Always);
        let (wal, _) = Wal::open(&config, dir.path(), |_, _, _| {}).unwrap();
        let waits: Vec<Durable> = (0..RECORDS)
            .map(|index| {
                let interaction = Interaction {
                    event_id: format!("e{index}"),
                    tenant_id: "t".into(),
                    customer_id: "c".into(),
                    channel: crate::domain::Channel::Email,
                    kind: crate::domain::Kind::Message,
                    direction: crate::domain::Direction::Inbound,
                    occurred_at_ms: index as i64 * 1_000,
                    text: String::new(),
                    value: 0.0,
                    author_followers: 0,
                    thread_id: String::new(),
                    reply_need: crate::domain::ReplyNeed::Unclear,
                };
                wal.enqueue(&WalRecord::new(&interaction, None))
            })
            .collect();
        for wait in waits {
            wait.try_wait_blocking().expect("durable");
        }
        let fsyncs = wal.fsyncs_total();
        assert!(
            (1..RECORDS as u64 / 10).contains(&fsyncs),
            "{fsyncs} fsyncs for {RECORDS} appends"
        );
        drop(wal);
        let mut replayed = 0;
        let (_, recovered) = Wal::open(&config, dir.path(), |_, _, _| replayed += 1).unwrap();
        assert_eq!(replayed, RECORDS);
        assert_eq!(recovered.log_records, RECORDS);
    }

    /// D12: a snapshot that cannot be written leaves no snapshot.tmp behind and its error keeps
    /// the OS error (here: snapshot.bin is a directory, so the rename fails).
    #[test]
    fn failed_snapshot_removes_its_temporary_file_and_keeps_the_os_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(SNAPSHOT_FILE)).unwrap();
        std::fs::write(dir.path().join(SNAPSHOT_FILE).join("x"), b"x").unwrap();
        let error = format!("{:#}", write_snapshot(dir.path(), b"data").unwrap_err());
        assert!(error.contains("os error"), "{error}");
        assert!(!dir.path().join(SNAPSHOT_TMP).exists());
    }

    /// D3: a deleted snapshot.bin next to a log lost every snapshotted event silently; now the
    /// start stops, naming the file.
    #[test]
    fn missing_snapshot_next_to_a_log_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let config = DurabilityConfig::default();
        drop(Wal::open(&config, dir.path(), |_, _, _| {}).unwrap());
        std::fs::remove_file(dir.path().join(SNAPSHOT_FILE)).unwrap();
        let error = Wal::open(&config, dir.path(), |_, _, _| {})
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains(SNAPSHOT_FILE), "{error}");
        // A fresh directory (neither file) still starts empty.
        let fresh = tempfile::tempdir().unwrap();
        assert!(Wal::open(&config, fresh.path(), |_, _, _| {}).is_ok());
    }
}
