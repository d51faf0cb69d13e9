//! Write-ahead log and state snapshots under `--data-dir`.
//!
//! Every accepted event (the validated interaction, without its text, plus the sentiment assigned to
//! it, so replay does not depend on the model) is appended to the active log `wal.log` before the
//! call that carried it is answered. Every file starts with an 8-byte header, `RPWL` and the format
//! version (u32 LE; [`FORMAT_VERSION`]); files without it are format 0; a newer version is refused
//! with a message. After the header, records are framed as `len: u32 LE | crc32: u32 LE | payload`
//! (log payload: a [`WalRecord`], this module's own protobuf message, never the public proto: see
//! [`record`]).
//!
//! A snapshot (`snapshot.bin`, format 3) is the state: a header record naming the last log segment
//! it covers and holding the agents' claims, then one record per customer (tenant, customer id, its
//! `CustomerHistory`: the kept events, the fold, the compacted base; and its identity `Profile`), so
//! its size follows what the store keeps, not the history. The log holds events, refinements,
//! identity requests and claims (format 2 had no identities or claims). To write one, the active
//! log is sealed (renamed `wal-<n>.log`, a new `wal.log`
//! started: appends wait only for that), every customer is written to `snapshot.tmp` while appends
//! go on, the file is fsynced and renamed over `snapshot.bin`, and the segments it covers are
//! deleted. A customer written after the seal may already hold events of the new log: replay is
//! idempotent (event ids, and refinements that change nothing), so the cut needs no pause.
//!
//! On start the snapshot is loaded (formats 2 and 3: the customers restored; formats 0 and 1: the
//! log folded in, replayed), then the sealed segments after it and `wal.log`; a torn last record of
//! `wal.log` (short, or failing its checksum at the end of the file) is cut off and nothing else is
//! discarded: a bad record followed by more data, or any damage in a sealed segment, is corruption
//! and stops the start with the file and byte named. The start then seals what it replayed and the
//! server writes a new state snapshot. Only accepted events are logged (never duplicates).
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

use crate::attributes::{AttributeValue, Attributes};
use crate::domain::Interaction;
use crate::identity::IdentityRequest;
use crate::scoring::CustomerHistory;
use crate::sentiment::{Sentiment, SentimentLabel};
use crate::store::{Agent, Claim, Profile, Store, Work};
use crate::telemetry;
use anyhow::Context;
use bincode::Options as _;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAL_FILE: &str = "wal.log";
/// The next active log while a seal puts it in place (a crash between the two renames leaves it).
const NEXT_WAL_FILE: &str = "wal.next";
/// Held locked (flock) by the process that has the data directory open; holds its pid.
const LOCK_FILE: &str = "LOCK";
const SNAPSHOT_FILE: &str = "snapshot.bin";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
/// First bytes of every file in the current format. Read as a format-0 record length (u32 LE) it
/// would claim ~1.4 GB, more than `MAX_RECORD_BYTES`, so no format-0 file can start with it.
pub const FORMAT_MAGIC: [u8; 4] = *b"RPWL";
/// The newest format this build reads and writes. 1: the header, records as in format 0; 2: the
/// snapshot holds each customer's state instead of the log folded in (logs as in 1); 3: events
/// may carry identifiers, the log holds identity requests, and each customer's state carries its
/// identity profile.
/// 4: every log file opens with a mark naming its segment number and a sealed one closes with a
/// mark counting its records; a state snapshot ends with a record counting its customers.
/// 5: logged events carry their urgency cues and intent, and so do state records and open
/// threads; the log holds tenants' intent lists, and a state snapshot's end record every tenant's
/// intents and table of intent names.
/// 6: state records carry their text's key and open threads what noise detection keeps (copies,
/// floods, cross-posts); summaries the customer's recent texts.
/// 7: claims hold a whole customer or one conversation (logged claims say which; a snapshot's
/// first record holds the claims so, and the agents registered for routing); the log holds
/// agents put, set and removed.
pub const FORMAT_VERSION: u32 = 7;
/// The first format whose snapshots hold conversation claims and agents.
const ROUTING_FORMAT_VERSION: u32 = 7;
/// The first format whose events and state carry urgency cues.
const CUES_FORMAT_VERSION: u32 = 5;
/// The first format whose log files carry segment marks and whose snapshots end with a count.
const MARKED_FORMAT_VERSION: u32 = 4;
/// The first format whose state records carry the customer's identity profile.
const PROFILE_FORMAT_VERSION: u32 = 3;
/// The first format whose snapshot holds state (records of tenant, customer and history, after a
/// [`SnapshotMeta`] record) rather than events.
const STATE_FORMAT_VERSION: u32 = 2;
/// Sealed log segments are `wal-<number, 20 digits>.log`.
const SEGMENT_PREFIX: &str = "wal-";
const SEGMENT_SUFFIX: &str = ".log";
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
    if version == 0 {
        // Format 0 files have no header: a header naming it is damage (a flipped bit).
        anyhow::bail!(
            "{} is damaged at byte 4: its header names format 0, which has no header",
            path.display()
        );
    }
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
    /// Set instead of `interaction`: a CRM's identity request (format 3).
    #[prost(message, optional, tag = "7")]
    pub identity: Option<record::LoggedIdentityRequest>,
    /// Set instead of `interaction`: a claim taken, renewed or ended (format 3).
    #[prost(message, optional, tag = "8")]
    pub claim: Option<record::LoggedClaim>,
    /// Set instead of `interaction`: a CRM's attribute update (format 3).
    #[prost(message, optional, tag = "9")]
    pub upsert: Option<record::LoggedUpsert>,
    /// Set instead of everything else: the log file's opening or closing mark (format 4).
    #[prost(message, optional, tag = "10")]
    pub segment: Option<record::SegmentMark>,
    /// Set instead of `interaction`: a tenant's intents set over the API (format 5).
    #[prost(message, optional, tag = "11")]
    pub intents: Option<record::LoggedIntents>,
    /// Set instead of `interaction`: an agent put, its status set, or removed (format 7).
    #[prost(message, optional, tag = "12")]
    pub agent: Option<record::LoggedAgent>,
}

/// What recovery hands back, in log order.
#[derive(Debug)]
pub enum Replayed<'a> {
    /// A logged event, or a refined sentiment for an event logged before it (`refines`).
    Event {
        /// The event (without its text).
        interaction: &'a Interaction,
        /// Its sentiment, when it had text.
        sentiment: Option<Sentiment>,
        /// The record refines the sentiment of an earlier event.
        refines: bool,
    },
    /// A logged identity request (`LinkIdentities`, `MergeCustomers`).
    Identity(&'a IdentityRequest),
    /// A claim taken or renewed (`Some`) or ended (`None`), from the log or a snapshot.
    Claim {
        /// The tenant.
        tenant_id: &'a str,
        /// The customer.
        customer_id: &'a str,
        /// What it holds.
        work: Work,
        /// The claim, or `None` when it ended.
        claim: Option<Claim>,
    },
    /// An agent put or changed (`Some`) or removed (`None`), from the log or a snapshot.
    Agent {
        /// The tenant.
        tenant_id: &'a str,
        /// The agent's id.
        agent_id: &'a str,
        /// The agent, or `None` when it was removed.
        agent: Option<Agent>,
    },
    /// A customer's state from a state snapshot.
    Customer {
        /// The tenant.
        tenant_id: &'a str,
        /// The customer.
        customer_id: &'a str,
        /// Its events and their fold.
        history: Box<CustomerHistory>,
        /// Its identifiers and merged ids (formats before 3: none).
        profile: Option<Profile>,
        /// Its CRM attributes (formats before 3: none).
        attributes: Option<Attributes>,
    },
    /// A tenant's intents set over the API (`SetIntents`), from the log.
    IntentList {
        /// The tenant.
        tenant_id: &'a str,
        /// The list (empty: removed).
        definitions: Vec<crate::sentiment::intent::IntentDefinition>,
    },
    /// A tenant's intents from a state snapshot: the list set over the API and the table of
    /// intent names its customers' records refer to. Comes before the snapshot's customers.
    Intents(crate::store::intents::SavedIntents),
    /// A logged attribute update (`UpsertCustomer`).
    Upsert {
        /// The tenant.
        tenant_id: &'a str,
        /// The customer.
        customer_id: &'a str,
        /// The update's version.
        version: u64,
        /// Keys set (`Some`) or removed (`None`).
        changes: &'a std::collections::BTreeMap<String, Option<AttributeValue>>,
    },
}

impl WalRecord {
    /// The record of an identity request that was carried out.
    pub fn identity(request: &IdentityRequest) -> Self {
        Self {
            identity: Some(record::LoggedIdentityRequest::from_request(request)),
            ..Self::default()
        }
    }

    /// The record of a claim on `work` taken or renewed (`Some`) or ended (`None`).
    pub fn claim(tenant_id: &str, customer_id: &str, work: Work, claim: Option<&Claim>) -> Self {
        Self {
            claim: Some(record::LoggedClaim::new(
                tenant_id,
                customer_id,
                work,
                claim,
            )),
            ..Self::default()
        }
    }

    /// The record of an agent put or changed (`Some`) or removed (`None`).
    pub fn agent(tenant_id: &str, agent_id: &str, agent: Option<&Agent>) -> Self {
        Self {
            agent: Some(record::LoggedAgent::new(tenant_id, agent_id, agent)),
            ..Self::default()
        }
    }

    /// The record of a tenant's intents set over the API.
    pub fn intents(
        tenant_id: &str,
        definitions: &[crate::sentiment::intent::IntentDefinition],
    ) -> Self {
        Self {
            intents: Some(record::LoggedIntents::new(tenant_id, definitions)),
            ..Self::default()
        }
    }

    /// The record of an attribute update that was applied.
    pub fn upsert(
        tenant_id: &str,
        customer_id: &str,
        version: u64,
        changes: &std::collections::BTreeMap<String, Option<AttributeValue>>,
    ) -> Self {
        Self {
            upsert: Some(record::LoggedUpsert::new(
                tenant_id,
                customer_id,
                version,
                changes,
            )),
            ..Self::default()
        }
    }

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
            identity: None,
            claim: None,
            upsert: None,
            segment: None,
            intents: None,
            agent: None,
        }
    }

    /// The same record carrying the timeline's snippet of the event's text (`None`: none kept).
    pub fn with_snippet(mut self, snippet: Option<&str>) -> Self {
        if let (Some(interaction), Some(snippet)) = (self.interaction.as_mut(), snippet) {
            interaction.text = snippet.to_string();
        }
        self
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

/// The payload of the whole, non-empty record with a matching checksum that `data` starts with,
/// if it starts with one.
fn whole_frame(data: &[u8]) -> Option<&[u8]> {
    let header = data.get(..8)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let payload = data.get(8..8usize.checked_add(len as usize)?)?;
    (len > 0 && len <= MAX_RECORD_BYTES && crc32fast::hash(payload) == crc).then_some(payload)
}

/// The records of `data` up to the first damaged one (`--drop-damaged`), and their length.
fn read_valid_prefix(data: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut payloads = Vec::new();
    let mut offset = 0usize;
    while let Some(payload) = whole_frame(&data[offset..]) {
        payloads.push(payload);
        offset += 8 + payload.len();
    }
    (payloads, offset)
}

/// The offset of the first position in `data` where a whole, non-empty record with a matching
/// checksum starts, if any: evidence that damage before it is not a torn tail. Only run on damage.
fn find_valid_frame(data: &[u8]) -> Option<usize> {
    (0..data.len().saturating_sub(8)).find(|&start| whole_frame(&data[start..]).is_some())
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
    /// The active log, open for appending.
    file: File,
    /// Records written since the log was opened (all segments).
    written: u64,
    /// Records in the active log (0 after it is sealed).
    active_records: u64,
    /// (device, inode) of the active log: checked after each fsync and before each seal, so a
    /// data directory deleted (or replaced) under the running server stops acknowledgements
    /// instead of writing to a file no restart will find.
    identity: (u64, u64),
    /// The number the active log gets when it is sealed.
    next_segment: u64,
}

/// The files of an open log, shared by the [`Wal`] handle and its writer thread.
struct LogFiles {
    dir: PathBuf,
    policy: FsyncPolicy,
    writer: Mutex<Writer>,
    /// A second handle on the log for fsync, so writers are not held up by it; guards the count
    /// of records known synced.
    syncer: Mutex<(File, u64)>,
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
pub struct Durable(
    tokio::sync::oneshot::Receiver<Result<(), String>>,
    Confirmer,
);

/// Who confirms a [`Durable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Confirmer {
    /// The local log: a failure stops the process.
    LocalLog,
    /// A remote log (the cluster's stream): a failure is the caller's to report.
    Remote,
}

impl Durable {
    /// A wait that a remote log answers through the sender (cluster mode: the stream's publish
    /// acknowledgement); its failure is returned by [`Durable::confirmed`], never fatal.
    pub fn remote() -> (tokio::sync::oneshot::Sender<Result<(), String>>, Durable) {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        (sender, Durable(receiver, Confirmer::Remote))
    }

    /// Waits; a local log's failure stops the process, a remote one's is returned.
    pub async fn confirmed(self) -> Result<(), String> {
        match self.1 {
            Confirmer::LocalLog => {
                or_abort(self.0.await);
                Ok(())
            }
            Confirmer::Remote => self
                .0
                .await
                .unwrap_or_else(|_| Err("the publisher stopped".to_string())),
        }
    }

    /// [`Durable::confirmed`] on this thread (outside async code).
    pub fn confirmed_blocking(self) -> Result<(), String> {
        match self.1 {
            Confirmer::LocalLog => {
                or_abort(self.0.blocking_recv());
                Ok(())
            }
            Confirmer::Remote => self
                .0
                .blocking_recv()
                .unwrap_or_else(|_| Err("the publisher stopped".to_string())),
        }
    }

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
    /// Held by a change whose replay depends on its order among others (attribute updates,
    /// claims, identity requests, events that resolve identifiers or end claims) from the moment
    /// it is applied to the store until it is queued, so the log's order is the apply order.
    ordered: Mutex<()>,
    /// One snapshot at a time.
    snapshotting: Mutex<()>,
    /// The data directory's lock, held as long as the log is open.
    _lock: File,
}

/// Fault injection for the model-based checker (FoundationDB's "buggify"): with
/// `RAPPORT_BUGGIFY=1` in the environment, one call in three pauses for up to a millisecond
/// between applying a change and queueing its record, so the races that the log's order must
/// survive happen often under test. Without it: one load of a cached flag.
pub fn buggify_pause() {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    static DRAWS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if !*ON.get_or_init(|| std::env::var_os("RAPPORT_BUGGIFY").is_some_and(|value| value == "1")) {
        return;
    }
    let draw = DRAWS
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        >> 32;
    if draw.is_multiple_of(3) {
        std::thread::sleep(Duration::from_micros(draw % 1_000));
    }
}

/// The guard of [`Wal::admit_in_order`]: the change is admitted and, when it was admitted in
/// order, no other ordered change is applied until it is dropped (after its record is queued).
pub struct AdmittedInOrder<'a> {
    _admitted: std::sync::RwLockReadGuard<'a, ()>,
    _order: Option<std::sync::MutexGuard<'a, ()>>,
}

/// What start-up recovered.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovered {
    /// Customers restored from a state snapshot (format 2).
    pub snapshot_customers: usize,
    /// Event records loaded from an older snapshot (formats 0 and 1: the log folded in).
    pub snapshot_records: usize,
    /// Valid records replayed from the log segments after the snapshot.
    pub log_records: usize,
    /// Bytes of a torn last record cut off the log.
    pub torn_bytes: usize,
    /// The format of the snapshot it started from ([`FORMAT_VERSION`] for a fresh directory):
    /// an older one is rewritten at once.
    pub snapshot_version: u32,
}

/// How state snapshot records are encoded: bincode with variable-length integers (enum tags and
/// small counts take a byte), little-endian. Part of format 2: changing it is a new format.
fn state_encoding() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .with_little_endian()
        .with_limit(u64::from(MAX_RECORD_BYTES))
}

/// The first record of a state snapshot: the log it covers, the claims (format 3) and the agents
/// (format 7).
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotMeta {
    /// Every sealed log segment up to this number is in the state (0: none).
    covers_segment: u64,
    /// Every claim when the snapshot began: tenant, customer, claim.
    claims: Vec<(String, String, Claim)>,
    /// Every agent registered when the snapshot began, as the log records it
    /// ([`record::LoggedAgent`], prost-encoded).
    agents: Vec<Vec<u8>>,
}

/// The first record of a state snapshot of formats 3 to 6: claims held whole customers.
#[derive(serde::Deserialize)]
struct SnapshotMetaV6 {
    covers_segment: u64,
    claims: Vec<(String, String, ClaimV6)>,
}

/// A claim in a snapshot of formats 3 to 6 (on a whole customer).
#[derive(serde::Deserialize)]
struct ClaimV6 {
    agent_id: String,
    expires_at_ms: i64,
}

/// What the last record of a state snapshot (format 4) starts with.
const SNAPSHOT_END: [u8; 4] = *b"END4";

/// The last record of a state snapshot (format 4): the customer records before it.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotEndV4 {
    /// [`SNAPSHOT_END`].
    end: [u8; 4],
    /// Customer records in the snapshot.
    customers: u64,
}

/// The last record of a state snapshot (format 5): the customer records before it, and every
/// tenant's intents as they stood once the customers were written (so the table of intent names
/// holds every id a customer record refers to). Read before the customers are restored.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotEnd {
    /// [`SNAPSHOT_END`].
    end: [u8; 4],
    /// Customer records in the snapshot.
    customers: u64,
    /// Each tenant's list set over the API and its table of intent names.
    intents: Vec<crate::store::intents::SavedIntents>,
}

/// What recovery does with damage that no crash leaves (anything but a torn tail of the active
/// log): refuse the start, naming the file and byte, or (`--drop-damaged`) log it as an error
/// that says what is dropped and go on with what can be read.
struct DamagePolicy {
    drop: bool,
}

impl DamagePolicy {
    /// Refuses the start with `message`, or with `--drop-damaged` logs it and goes on.
    fn found(&self, message: String) -> anyhow::Result<()> {
        if self.drop {
            tracing::error!(damage = %message, "--drop-damaged: dropping what is damaged");
            Ok(())
        } else {
            anyhow::bail!(
                "{message}. Nothing was changed: restore the file, or start once with \
                 --drop-damaged to drop what is damaged (each drop is logged) and go on"
            )
        }
    }
}

/// Locks the data directory for this process (an advisory `flock` on `LOCK`, released when the
/// process ends, even by kill -9) and writes its pid there; a directory another process holds
/// is refused, naming it.
fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            anyhow::bail!(
                "data directory {} is in use by another rapport process (pid {}, holding {}):                  one process per data directory",
                dir.display(),
                if holder.is_empty() { "unknown" } else { holder },
                path.display()
            );
        }
        Err(std::fs::TryLockError::Error(error)) => {
            return Err(error).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    file.set_len(0)?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
    file.sync_all()?;
    Ok(file)
}

/// The segment mark of a record, if it is one.
fn segment_mark(payload: &[u8]) -> Option<record::SegmentMark> {
    <WalRecord as prost::Message>::decode(payload)
        .ok()
        .and_then(|record| record.segment)
}

/// A framed segment mark.
fn mark_frame(number: u64, sealed: bool, records: u64) -> Vec<u8> {
    frame(&prost::Message::encode_to_vec(&WalRecord {
        segment: Some(record::SegmentMark {
            number,
            sealed,
            records,
        }),
        ..WalRecord::default()
    }))
}

/// The framed closing mark of segment `number` holding `records` records.
fn seal_mark(number: u64, records: u64) -> Vec<u8> {
    mark_frame(number, true, records)
}

/// The first record of a format-2 state snapshot.
#[derive(serde::Deserialize)]
struct SnapshotMetaV2 {
    covers_segment: u64,
}

/// The sealed log segments in `dir` (`wal-<n>.log`), by number.
fn sealed_segments(dir: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|name| name.strip_prefix(SEGMENT_PREFIX))
            .and_then(|rest| rest.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|number| number.parse::<u64>().ok())
        else {
            continue;
        };
        segments.push((number, entry.path()));
    }
    segments.sort();
    Ok(segments)
}

/// The path of sealed segment `number`.
fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{number:020}{SEGMENT_SUFFIX}"))
}

/// A file of framed records as read at start: the valid records after its header.
struct FramedFile<'a> {
    /// Payloads of the valid records, in order.
    payloads: Vec<&'a [u8]>,
    /// The file's format version (0: no header).
    version: u32,
    /// Bytes of header before the records.
    header_bytes: usize,
    /// Bytes of valid records after the header.
    valid_bytes: usize,
    /// Bytes after the header: the valid records and any torn tail.
    body_bytes: usize,
}

impl<'a> FramedFile<'a> {
    /// The records of `data`, the whole file at `path`; a damaged record with data after it is an
    /// error naming the file and byte, a torn tail ends the valid records.
    fn parse(data: &'a [u8], path: &Path) -> anyhow::Result<Self> {
        let (body, version) = file_body(data, path)?;
        let header_bytes = data.len() - body.len();
        let (payloads, valid_bytes) = read_frames(body).with_context(|| {
            format!(
                "in {} (byte offsets after its {header_bytes}-byte header)",
                path.display()
            )
        })?;
        Ok(Self {
            payloads,
            version,
            header_bytes,
            valid_bytes,
            body_bytes: body.len(),
        })
    }

    /// [`FramedFile::parse`] at start: with `--drop-damaged`, a damaged record ends the valid
    /// records instead of the start (the drop is logged).
    fn read(data: &'a [u8], path: &Path, damage: &DamagePolicy) -> anyhow::Result<Self> {
        match Self::parse(data, path) {
            Ok(file) => Ok(file),
            Err(error) if damage.drop => {
                damage.found(format!("{error:#}"))?;
                let (body, version) = file_body(data, path)?;
                let (payloads, valid_bytes) = read_valid_prefix(body);
                Ok(Self {
                    payloads,
                    version,
                    header_bytes: data.len() - body.len(),
                    valid_bytes,
                    body_bytes: body.len(),
                })
            }
            Err(error) => Err(error),
        }
    }

    /// The records of a log file (format 4) between its marks: it must open with the mark of
    /// segment `number` and, when `sealed`, close with that number's mark counting the records
    /// between. Anything else is damage (a file emptied, cut at a record boundary, renamed or put
    /// in another's place).
    fn marked_records(
        &self,
        path: &Path,
        number: u64,
        sealed: bool,
        damage: &DamagePolicy,
    ) -> anyhow::Result<&[&'a [u8]]> {
        let end_byte = self.header_bytes + self.valid_bytes;
        let Some((first, mut records)) = self.payloads.split_first() else {
            damage.found(format!(
                "{} is cut at byte {end_byte}: a log file always holds its header and opening \
                 mark, so it was emptied and the events it held would be lost",
                path.display()
            ))?;
            return Ok(&[]);
        };
        match segment_mark(first) {
            Some(mark) if !mark.sealed && mark.number == number => {}
            Some(mark) if !mark.sealed => damage.found(format!(
                "{} opens as segment {} where segment {number} was expected: a log file is \
                 missing or was renamed or replaced",
                path.display(),
                mark.number
            ))?,
            _ => damage.found(format!(
                "{} has no opening mark at byte {}",
                path.display(),
                self.header_bytes
            ))?,
        }
        // The active log may end with its closing mark: a seal stopped by a crash before the
        // rename (its successor, `wal.next`, is written again at this start).
        let closed = !sealed
            && records
                .last()
                .and_then(|last| segment_mark(last))
                .is_some_and(|mark| mark.sealed);
        if sealed || closed {
            let closing = records.split_last().and_then(|(last, rest)| {
                let mark = segment_mark(last)?;
                mark.sealed.then_some((mark, rest))
            });
            match closing {
                Some((mark, rest))
                    if mark.number == number && mark.records == rest.len() as u64 =>
                {
                    records = rest;
                }
                Some((mark, rest)) => {
                    damage.found(format!(
                        "{} closes as segment {} of {} records but is segment {number} with {}",
                        path.display(),
                        mark.number,
                        mark.records,
                        rest.len()
                    ))?;
                    records = rest;
                }
                None => damage.found(format!(
                    "{} is cut at byte {end_byte}: a sealed segment ends with its closing mark",
                    path.display()
                ))?,
            }
        }
        Ok(records)
    }

    /// Bytes of a torn tail after the valid records.
    fn torn_bytes(&self) -> usize {
        self.body_bytes - self.valid_bytes
    }

    /// The file, or an error naming it and the byte where it is damaged when it has a torn tail:
    /// for files that are only ever written whole (`why`).
    fn whole(self, path: &Path, why: &str) -> anyhow::Result<Self> {
        if let Some(torn) = self.torn(path, why) {
            anyhow::bail!(torn);
        }
        Ok(self)
    }

    /// What is wrong with a file only ever written whole (`why`) that has a torn tail, naming
    /// it and the byte; `None` when it has none.
    fn torn(&self, path: &Path, why: &str) -> Option<String> {
        (self.torn_bytes() > 0).then(|| {
            format!(
                "{} is damaged at byte {} ({why})",
                path.display(),
                self.header_bytes + self.valid_bytes
            )
        })
    }
}

/// Applies one record of the log's own type (a framed payload without its frame), as recovery
/// does: what cluster replicas consume from the stream.
pub fn replay_payload(payload: &[u8], apply: &mut impl FnMut(Replayed<'_>)) -> anyhow::Result<()> {
    replay_events(&[payload], apply)
}

/// A cluster partition's state (cluster mode's per-partition snapshot): the log's header, a record
/// with the stream sequence it covers, then one record per customer as in a state snapshot.
/// `visit_all` hands over the partition's customers.
pub fn encode_partition_state(
    applied_through: u64,
    visit_all: impl FnOnce(&mut CustomerVisit<'_>) -> std::io::Result<()>,
) -> std::io::Result<Vec<u8>> {
    let mut out = format_header().to_vec();
    let meta = state_encoding()
        .serialize(&applied_through)
        .map_err(std::io::Error::other)?;
    out.extend_from_slice(&frame(&meta));
    visit_all(
        &mut |tenant_id, customer_id, history, profile, attributes| {
            let payload = state_encoding()
                .serialize(&(tenant_id, customer_id, history, profile, attributes))
                .map_err(std::io::Error::other)?;
            out.extend_from_slice(&frame(&payload));
            Ok(())
        },
    )?;
    Ok(out)
}

/// Restores a partition's state written by [`encode_partition_state`] through `apply` (one
/// [`Replayed::Customer`] per customer) and returns the stream sequence it covers. A torn or
/// damaged object is refused whole (`name` says which), so the caller replays the stream instead.
pub fn decode_partition_state(
    bytes: &[u8],
    name: &str,
    mut apply: impl FnMut(Replayed<'_>),
) -> anyhow::Result<u64> {
    let path = Path::new(name);
    let state =
        FramedFile::parse(bytes, path)?.whole(path, "partition states are written whole")?;
    let (meta, customers) = state
        .payloads
        .split_first()
        .with_context(|| format!("{name} has no header record"))?;
    let applied_through: u64 = state_encoding()
        .deserialize(meta)
        .with_context(|| format!("undecodable header record in {name}"))?;
    let mut decoded = Vec::with_capacity(customers.len());
    for payload in customers {
        let record: CustomerRecord = state_encoding()
            .deserialize(payload)
            .with_context(|| format!("undecodable customer record in {name}"))?;
        decoded.push(record);
    }
    // Decoded whole before anything is applied: a bad record changes nothing.
    for record in decoded {
        apply_customer(&mut apply, record);
    }
    Ok(applied_through)
}

/// Hands one customer record of a state (a snapshot's, a partition's) to `apply`.
fn apply_customer(apply: &mut impl FnMut(Replayed<'_>), record: CustomerRecord) {
    let (tenant_id, customer_id, history, profile, attributes) = record;
    apply(Replayed::Customer {
        tenant_id: &tenant_id,
        customer_id: &customer_id,
        history: Box::new(history),
        profile,
        attributes,
    });
}

/// Replays the framed records of a log file (events, refinements, identity requests) through
/// `apply`.
fn replay_events(payloads: &[&[u8]], apply: &mut impl FnMut(Replayed<'_>)) -> anyhow::Result<()> {
    for payload in payloads {
        let mut record = <WalRecord as prost::Message>::decode(*payload)
            .context("undecodable record with a valid checksum")?;
        if let Some(upsert) = record.upsert.take() {
            let (tenant_id, customer_id, version, changes) = upsert
                .into_parts()
                .map_err(|error| anyhow::anyhow!("invalid logged attribute update: {error}"))?;
            apply(Replayed::Upsert {
                tenant_id: &tenant_id,
                customer_id: &customer_id,
                version,
                changes: &changes,
            });
            continue;
        }
        if let Some(intents) = record.intents.take() {
            let (tenant_id, definitions) = intents.into_parts();
            apply(Replayed::IntentList {
                tenant_id: &tenant_id,
                definitions,
            });
            continue;
        }
        if let Some(claim) = record.claim.take() {
            let work = claim
                .work()
                .map_err(|error| anyhow::anyhow!("invalid logged claim: {error}"))?;
            apply(Replayed::Claim {
                tenant_id: &claim.tenant_id,
                customer_id: &claim.customer_id,
                work,
                claim: (claim.expires_at_ms != 0).then(|| Claim {
                    agent_id: claim.agent_id.clone(),
                    expires_at_ms: claim.expires_at_ms,
                    work,
                }),
            });
            continue;
        }
        if let Some(agent) = record.agent.take() {
            let restored = agent
                .agent()
                .map_err(|error| anyhow::anyhow!("invalid logged agent: {error}"))?;
            apply(Replayed::Agent {
                tenant_id: &agent.tenant_id,
                agent_id: &agent.agent_id,
                agent: restored,
            });
            continue;
        }
        if record.segment.is_some() {
            anyhow::bail!("a segment mark inside a log file (only its first and last records)");
        }
        if let Some(identity) = record.identity.take() {
            let request = identity
                .into_request()
                .map_err(|error| anyhow::anyhow!("invalid logged identity request: {error}"))?;
            apply(Replayed::Identity(&request));
            continue;
        }
        let (interaction, sentiment, refines) = record.decode_event()?;
        apply(Replayed::Event {
            interaction: &interaction,
            sentiment,
            refines,
        });
    }
    Ok(())
}

impl Wal {
    /// Loads the snapshot (a state snapshot through `restore`: tenant, customer, history; an
    /// older one's events through `apply`), replays the sealed log segments after it and the
    /// active log through `apply` (event, sentiment, whether the record refines an earlier
    /// event's sentiment), seals what the active log held as a segment and opens an empty one.
    /// The caller then writes a state snapshot ([`Wal::snapshot`]), which folds the segments in.
    pub fn open(
        config: &DurabilityConfig,
        dir: &Path,
        mut apply: impl FnMut(Replayed<'_>),
    ) -> anyhow::Result<(Arc<Self>, Recovered)> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
        // Before anything in the directory is read or written: one process per data directory.
        let lock = lock_data_dir(dir)?;
        let damage = DamagePolicy {
            drop: config.drop_damaged,
        };
        let mut segments = sealed_segments(dir)?;
        let log_path = dir.join(WAL_FILE);
        let next_log_path = dir.join(NEXT_WAL_FILE);
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        // A crash between sealing the active log and putting its successor in place leaves the
        // successor (only its header and opening mark) as wal.next.
        if !log_path.exists() && next_log_path.exists() {
            std::fs::rename(&next_log_path, &log_path)
                .with_context(|| format!("cannot rename {}", next_log_path.display()))?;
        }
        // Every start writes snapshot.bin before it creates a log, and a snapshot is replaced only
        // by rename: a log without a snapshot means the snapshot was lost, and the log alone would
        // start from a silently shortened history.
        if (log_path.exists() || !segments.is_empty()) && !snapshot_path.exists() {
            damage.found(format!(
                "{} is missing while {} exists: the events it held would be lost; restore it \
                 (or remove the logs to start empty on purpose)",
                snapshot_path.display(),
                if log_path.exists() {
                    log_path.display().to_string()
                } else {
                    segments[0].1.display().to_string()
                }
            ))?;
        }
        let snapshot_file = read_file(&snapshot_path)?;
        let snapshot_exists = snapshot_path.exists();
        let snapshot = FramedFile::read(&snapshot_file, &snapshot_path, &damage)?;
        if let Some(torn) = snapshot.torn(&snapshot_path, "snapshots are written whole, by rename")
        {
            damage.found(torn)?;
        }
        // Snapshots are written whole and renamed into place: never empty, never without their
        // header record.
        if snapshot_exists && snapshot.payloads.is_empty() {
            damage.found(format!(
                "{} is cut at byte {} (it has {} bytes; a snapshot holds at least its header and \
                 first record)",
                snapshot_path.display(),
                snapshot_file.len(),
                snapshot_file.len()
            ))?;
        }
        let mut recovered = Recovered {
            snapshot_version: if snapshot_exists {
                snapshot.version
            } else {
                FORMAT_VERSION
            },
            ..Recovered::default()
        };
        let mut covered = 0u64;
        if snapshot.version >= STATE_FORMAT_VERSION {
            let mut payloads = &snapshot.payloads[..];
            let mut saved_intents = Vec::new();
            if snapshot.version >= MARKED_FORMAT_VERSION && !payloads.is_empty() {
                // The last record counts the customer records: a snapshot cut at a record
                // boundary lacks it, or counts more than it holds.
                let counted = payloads.split_last().and_then(|(end, rest)| {
                    let end: SnapshotEnd = if snapshot.version >= CUES_FORMAT_VERSION {
                        state_encoding().deserialize(end).ok()?
                    } else {
                        let end: SnapshotEndV4 = state_encoding().deserialize(end).ok()?;
                        SnapshotEnd {
                            end: end.end,
                            customers: end.customers,
                            intents: Vec::new(),
                        }
                    };
                    (end.end == SNAPSHOT_END).then_some((end.customers, end.intents, rest))
                });
                match counted {
                    Some((customers, intents, rest))
                        if customers == rest.len().saturating_sub(1) as u64 =>
                    {
                        payloads = rest;
                        saved_intents = intents;
                    }
                    Some((customers, intents, rest)) => {
                        damage.found(format!(
                            "{} counts {customers} customers but holds {}",
                            snapshot_path.display(),
                            rest.len().saturating_sub(1)
                        ))?;
                        payloads = rest;
                        saved_intents = intents;
                    }
                    None => damage.found(format!(
                        "{} is cut at byte {}: its last record is not the end record (a \
                         snapshot is written whole, by rename)",
                        snapshot_path.display(),
                        snapshot.header_bytes + snapshot.valid_bytes
                    ))?,
                }
            }
            // No record at all: a fresh directory (no file), or damage dropped above.
            let (meta, customers) = payloads
                .split_first()
                .map_or((None, &[][..]), |(meta, customers)| (Some(meta), customers));
            let undecodable =
                || format!("undecodable header record in {}", snapshot_path.display());
            let meta: SnapshotMeta = match meta {
                None => SnapshotMeta {
                    covers_segment: 0,
                    claims: Vec::new(),
                    agents: Vec::new(),
                },
                Some(meta) if snapshot.version >= ROUTING_FORMAT_VERSION => state_encoding()
                    .deserialize(meta)
                    .with_context(undecodable)?,
                Some(meta) if snapshot.version >= PROFILE_FORMAT_VERSION => {
                    let meta: SnapshotMetaV6 = state_encoding()
                        .deserialize(meta)
                        .with_context(undecodable)?;
                    SnapshotMeta {
                        covers_segment: meta.covers_segment,
                        claims: meta
                            .claims
                            .into_iter()
                            .map(|(tenant_id, customer_id, claim)| {
                                let claim = Claim {
                                    agent_id: claim.agent_id,
                                    expires_at_ms: claim.expires_at_ms,
                                    work: Work::Customer,
                                };
                                (tenant_id, customer_id, claim)
                            })
                            .collect(),
                        agents: Vec::new(),
                    }
                }
                Some(meta) => {
                    let meta: SnapshotMetaV2 = state_encoding()
                        .deserialize(meta)
                        .with_context(undecodable)?;
                    SnapshotMeta {
                        covers_segment: meta.covers_segment,
                        claims: Vec::new(),
                        agents: Vec::new(),
                    }
                }
            };
            covered = meta.covers_segment;
            for (tenant_id, customer_id, claim) in meta.claims {
                apply(Replayed::Claim {
                    tenant_id: &tenant_id,
                    customer_id: &customer_id,
                    work: claim.work,
                    claim: Some(claim),
                });
            }
            for bytes in meta.agents {
                let logged = <record::LoggedAgent as prost::Message>::decode(bytes.as_slice())
                    .with_context(undecodable)?;
                let agent = logged
                    .agent()
                    .map_err(|error| anyhow::anyhow!("{}: {error}", undecodable()))?;
                apply(Replayed::Agent {
                    tenant_id: &logged.tenant_id,
                    agent_id: &logged.agent_id,
                    agent,
                });
            }
            // The tables of intent names the customers' records refer to, before them.
            for saved in saved_intents {
                apply(Replayed::Intents(saved));
            }
            for payload in customers {
                let undecodable = || {
                    format!(
                        "undecodable customer record with a valid checksum in {}",
                        snapshot_path.display()
                    )
                };
                let decode_current = || state_encoding().deserialize(payload);
                let (tenant_id, customer_id, history, profile, attributes): CustomerRecord =
                    if snapshot.version >= PROFILE_FORMAT_VERSION {
                        crate::scoring::decode_state_of_format(snapshot.version, decode_current)
                            .with_context(undecodable)?
                    } else {
                        let (tenant_id, customer_id, history): (
                            String,
                            String,
                            crate::scoring::CustomerHistoryV2,
                        ) = crate::scoring::decode_state_of_format(snapshot.version, || {
                            state_encoding().deserialize(payload)
                        })
                        .with_context(undecodable)?;
                        (tenant_id, customer_id, history.into(), None, None)
                    };
                apply_customer(
                    &mut apply,
                    (tenant_id, customer_id, history, profile, attributes),
                );
            }
            recovered.snapshot_customers = customers.len();
        } else {
            replay_events(&snapshot.payloads, &mut apply)
                .with_context(|| format!("in {}", snapshot_path.display()))?;
            recovered.snapshot_records = snapshot.payloads.len();
        }
        // Segments the snapshot covers are left by a crash before they were deleted; one whose
        // mark names another number was renamed, and what it holds is not in the snapshot.
        let mut after = Vec::with_capacity(segments.len());
        for (number, path) in segments.drain(..) {
            if number > covered {
                after.push((number, path));
                continue;
            }
            let data = read_file(&path)?;
            let segment = FramedFile::read(&data, &path, &damage)?;
            if let Some(mark) = segment.payloads.first().and_then(|p| segment_mark(p)) {
                if mark.number != number {
                    damage.found(format!(
                        "{} opens as segment {}: it was renamed; what it holds is not in {}",
                        path.display(),
                        mark.number,
                        snapshot_path.display()
                    ))?;
                    continue;
                }
            }
            remove_if_present(&path)?;
        }
        let mut next_segment = covered + 1;
        for (number, path) in after {
            if number != next_segment {
                damage.found(format!(
                    "log segment {} is missing (found {} after {} covers segment {covered}): \
                     the events it held would be lost",
                    segment_path(dir, next_segment).display(),
                    path.display(),
                    snapshot_path.display()
                ))?;
            }
            let data = read_file(&path)?;
            let segment = FramedFile::read(&data, &path, &damage)?;
            if let Some(torn) =
                segment.torn(&path, "segments are fsynced whole before they are sealed")
            {
                damage.found(torn)?;
            }
            let records = if segment.version >= MARKED_FORMAT_VERSION || data.is_empty() {
                segment.marked_records(&path, number, true, &damage)?
            } else {
                &segment.payloads[..]
            };
            replay_events(records, &mut apply).with_context(|| format!("in {}", path.display()))?;
            recovered.log_records += records.len();
            next_segment = number + 1;
        }
        let log_exists = log_path.exists();
        let log_file = read_file(&log_path)?;
        let log = FramedFile::read(&log_file, &log_path, &damage)?;
        // From format 4 on, the active log is put in place whole (its header and opening mark,
        // by rename) before a snapshot may name the segment before it: missing or empty, it was
        // deleted or emptied, and its events with it.
        let marked_dir = snapshot_exists && snapshot.version >= MARKED_FORMAT_VERSION;
        let log_records = if !log_exists {
            if marked_dir {
                damage.found(format!(
                    "{} is missing (the log after segment {}): the events it held would be lost",
                    log_path.display(),
                    next_segment - 1
                ))?;
            }
            &[][..]
        } else if log.version >= MARKED_FORMAT_VERSION || (marked_dir && log.payloads.is_empty()) {
            log.marked_records(&log_path, next_segment, false, &damage)?
        } else {
            &log.payloads[..]
        };
        if snapshot.version < FORMAT_VERSION
            || (!log_file.is_empty() && log.version < FORMAT_VERSION)
        {
            tracing::info!(
                snapshot_version = snapshot.version,
                log_version = log.version,
                to = FORMAT_VERSION,
                "data directory in an older format: rewriting it in the current one"
            );
        }
        replay_events(log_records, &mut apply)
            .with_context(|| format!("in {}", log_path.display()))?;
        recovered.log_records += log_records.len();
        recovered.torn_bytes = log.torn_bytes();
        if recovered.torn_bytes > 0 {
            tracing::warn!(
                file = %log_path.display(),
                at_byte = log.header_bytes + log.valid_bytes,
                bytes = recovered.torn_bytes,
                "discarded a torn last log record (a crash while it was written)"
            );
        }
        // A fresh directory: an empty state snapshot first, so a log never exists without one.
        if !snapshot_exists {
            write_state_file(dir, 0, Vec::new(), Vec::new(), |_| Ok(()), Vec::new)?;
        }
        // What the active log holds becomes a sealed segment (cut to its valid records, its
        // closing mark added); the next snapshot folds it in.
        if !log_records.is_empty() {
            let mut file = OpenOptions::new()
                .write(true)
                .open(&log_path)
                .with_context(|| format!("cannot open {}", log_path.display()))?;
            // Without a closing mark a stopped seal may have left (it is written again).
            let closing_bytes = log
                .payloads
                .last()
                .filter(|last| segment_mark(last).is_some_and(|mark| mark.sealed))
                .map_or(0, |last| 8 + last.len());
            file.set_len((log.header_bytes + log.valid_bytes - closing_bytes) as u64)?;
            if log.version >= MARKED_FORMAT_VERSION {
                use std::io::Seek;
                file.seek(std::io::SeekFrom::End(0))?;
                file.write_all(&seal_mark(next_segment, log_records.len() as u64))?;
            }
            file.sync_all()?;
            std::fs::rename(&log_path, segment_path(dir, next_segment))
                .with_context(|| format!("cannot seal {}", log_path.display()))?;
            next_segment += 1;
        }
        let (file, identity) = create_log(dir, next_segment)?;
        let sync_handle = file.try_clone()?;
        let files = Arc::new(LogFiles {
            dir: dir.to_path_buf(),
            policy: config.fsync,
            writer: Mutex::new(Writer {
                file,
                written: 0,
                active_records: 0,
                identity,
                next_segment,
            }),
            syncer: Mutex::new((sync_handle, 0)),
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
                ordered: Mutex::new(()),
                snapshotting: Mutex::new(()),
                _lock: lock,
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
        Durable(durable, Confirmer::LocalLog)
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

    /// [`Wal::admit`], and with `in_order` for a change whose replay depends on its order among
    /// other such changes (the version rule of attribute updates, a claim released and taken by
    /// another agent, a merge moving a claim) also the ordering lock: hold the guard from
    /// applying the change to the store until it is queued, so that such changes reach the log
    /// in the order they were applied.
    pub fn admit_in_order(&self, in_order: bool) -> AdmittedInOrder<'_> {
        let order = in_order.then(|| self.ordered.lock().unwrap_or_else(|e| e.into_inner()));
        AdmittedInOrder {
            _admitted: self.admit(),
            _order: order,
        }
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

    /// Writes a state snapshot of `store` and deletes the log segments it covers: the active log
    /// is sealed first (a brief hold on appends), then every customer's state is written to
    /// `snapshot.tmp` while appends go on, fsynced and renamed over `snapshot.bin`. A customer
    /// read after the seal may already hold later events: replaying them is idempotent.
    pub fn snapshot(&self, store: &Store) -> anyhow::Result<()> {
        let _one_at_a_time = self.snapshotting.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let result = self.write_snapshot_of(store);
        telemetry::snapshot_written(result.as_ref().ok().copied(), started.elapsed());
        result.map(|_size_bytes| ())
    }

    /// [`Wal::snapshot`] without the metrics; returns the new snapshot's size in bytes.
    fn write_snapshot_of(&self, store: &Store) -> anyhow::Result<u64> {
        let covers = self.files.seal()?;
        // Claims as of now (after the seal): a change since the seal is in the log too.
        let size = write_state_file(
            &self.files.dir,
            covers,
            store.all_claims(),
            store.all_agents(),
            |visit| {
                store.for_each_customer(|tenant_id, customer_id, history, profile, attributes| {
                    visit(tenant_id, customer_id, history, profile, attributes)
                })
            },
            // Taken once every customer is written: the tables hold every id they refer to.
            || store.intents().saved(),
        )?;
        for (number, path) in sealed_segments(&self.files.dir)? {
            if number <= covers {
                remove_if_present(&path)?;
            }
        }
        sync_dir(&self.files.dir)?;
        Ok(size)
    }
}

/// Removes a file, if it is there.
fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Writes the next active log whole as `wal.next`: its header and the opening mark of segment
/// `number`, fsynced. [`install_log`] puts it in place.
fn prepare_log(dir: &Path, number: u64) -> anyhow::Result<()> {
    let path = dir.join(NEXT_WAL_FILE);
    let mut contents = format_header().to_vec();
    contents.extend_from_slice(&mark_frame(number, false, 0));
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut file| {
            file.write_all(&contents)?;
            file.sync_all()
        })
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Renames the prepared `wal.next` to `wal.log` and fsyncs the directory; returns the new log
/// open for appending and its (device, inode).
fn install_log(dir: &Path) -> anyhow::Result<(File, (u64, u64))> {
    use std::os::unix::fs::MetadataExt;
    let path = dir.join(WAL_FILE);
    std::fs::rename(dir.join(NEXT_WAL_FILE), &path)
        .with_context(|| format!("cannot put {} in place", path.display()))?;
    sync_dir(dir)?;
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let metadata = file.metadata()?;
    Ok((file, (metadata.dev(), metadata.ino())))
}

/// Creates the active log for segment `number` whole (header and opening mark, by rename, so it
/// never exists empty); returns it open for appending and its (device, inode).
fn create_log(dir: &Path, number: u64) -> anyhow::Result<(File, (u64, u64))> {
    prepare_log(dir, number)?;
    install_log(dir)
}

/// One customer's state as a state snapshot holds it.
/// What a snapshot writer hands each customer to: tenant, customer, history, profile, attributes.
pub type CustomerVisit<'a> = dyn FnMut(
        &str,
        &str,
        &CustomerHistory,
        Option<&Profile>,
        Option<&Attributes>,
    ) -> std::io::Result<()>
    + 'a;

/// A state record as read back: tenant, customer, history, profile, attributes.
type CustomerRecord = (
    String,
    String,
    CustomerHistory,
    Option<Profile>,
    Option<Attributes>,
);

/// Writes a state snapshot to snapshot.tmp (header, the [`SnapshotMeta`] record, then one record
/// per customer that `visit_all` hands over), fsyncs it and renames it over snapshot.bin; returns
/// its size. On failure the temporary file is removed and the error names it and keeps the OS
/// error.
fn write_state_file(
    dir: &Path,
    covers_segment: u64,
    claims: Vec<(String, String, Claim)>,
    agents: Vec<(String, Agent)>,
    visit_all: impl FnOnce(&mut CustomerVisit<'_>) -> std::io::Result<()>,
    intents: impl FnOnce() -> Vec<crate::store::intents::SavedIntents>,
) -> anyhow::Result<u64> {
    let tmp = dir.join(SNAPSHOT_TMP);
    let written = (|| -> std::io::Result<u64> {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        let mut size = 0u64;
        let mut customers = 0u64;
        let mut put = |out: &mut std::io::BufWriter<File>, bytes: &[u8]| -> std::io::Result<()> {
            size += bytes.len() as u64;
            out.write_all(bytes)
        };
        let mut header = format_header();
        header[4..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        put(&mut out, &header)?;
        let meta = state_encoding()
            .serialize(&SnapshotMeta {
                covers_segment,
                claims,
                agents: agents
                    .iter()
                    .map(|(tenant_id, agent)| {
                        prost::Message::encode_to_vec(&record::LoggedAgent::new(
                            tenant_id,
                            &agent.agent_id,
                            Some(agent),
                        ))
                    })
                    .collect(),
            })
            .map_err(std::io::Error::other)?;
        put(&mut out, &frame(&meta))?;
        visit_all(
            &mut |tenant_id, customer_id, history, profile, attributes| {
                let payload = state_encoding()
                    .serialize(&(tenant_id, customer_id, history, profile, attributes))
                    .map_err(std::io::Error::other)?;
                customers += 1;
                put(&mut out, &frame(&payload))
            },
        )?;
        let end = state_encoding()
            .serialize(&SnapshotEnd {
                end: SNAPSHOT_END,
                customers,
                intents: intents(),
            })
            .map_err(std::io::Error::other)?;
        put(&mut out, &frame(&end))?;
        let file = out.into_inner().map_err(|error| error.into_error())?;
        file.sync_all()?;
        Ok(size)
    })()
    .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", tmp.display()))
    .and_then(|size| {
        std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))
            .map(|()| size)
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot rename {} to {}: {error}",
                    tmp.display(),
                    SNAPSHOT_FILE
                )
            })
    });
    match written {
        Ok(size) => {
            sync_dir(dir)?;
            Ok(size)
        }
        Err(error) => {
            let _ = std::fs::remove_file(&tmp);
            Err(error)
        }
    }
}

impl LogFiles {
    /// Writes `framed` (whole records) at the end of the log; returns the records written so far.
    fn write(&self, framed: &[u8], records: u64) -> std::io::Result<u64> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.file.write_all(framed)?;
        writer.written += records;
        writer.active_records += records;
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
        let identity = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .identity;
        log_in_place(&self.dir, identity)
    }

    /// Seals the active log as the next segment and starts an empty one (appends wait meanwhile,
    /// for two fsyncs and a rename); returns the number of the last sealed segment, which a
    /// snapshot taken from now on covers. An empty active log is not sealed.
    fn seal(&self) -> anyhow::Result<u64> {
        let mut syncer = self.syncer.lock().unwrap_or_else(|e| e.into_inner());
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        log_in_place(&self.dir, writer.identity)?;
        if writer.active_records == 0 {
            return Ok(writer.next_segment - 1);
        }
        let sealed = writer.next_segment;
        // The successor first: if it cannot be created (a full disk, no file descriptor left),
        // the active log stays as it is and the seal is tried again later.
        prepare_log(&self.dir, sealed + 1)?;
        // From here on a failure would leave the log half sealed: stop rather than go on.
        let closing = seal_mark(sealed, writer.active_records);
        let closed = writer
            .file
            .write_all(&closing)
            .and_then(|()| writer.file.sync_data())
            .and_then(|()| {
                std::fs::rename(self.dir.join(WAL_FILE), segment_path(&self.dir, sealed))
            })
            .map_err(anyhow::Error::from)
            .and_then(|()| install_log(&self.dir));
        let (file, identity) = match closed {
            Ok(opened) => opened,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "cannot seal the active log: stopping");
                std::process::abort()
            }
        };
        syncer.0 = file.try_clone()?;
        syncer.1 = writer.written;
        writer.file = file;
        writer.identity = identity;
        writer.active_records = 0;
        writer.next_segment = sealed + 1;
        Ok(sealed)
    }
}

/// Fails when `wal.log` in `dir` is not the file with this (device, inode).
fn log_in_place(dir: &Path, identity: (u64, u64)) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let path = dir.join(WAL_FILE);
    let in_place = std::fs::metadata(&path)
        .map(|metadata| (metadata.dev(), metadata.ino()) == identity)
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

/// Periodic fsync (interval policy) and snapshot tasks; they stop when `stop` turns true.
pub fn spawn_background(
    wal: Arc<Wal>,
    store: Arc<Store>,
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
                let (wal, store) = (Arc::clone(&wal), Arc::clone(&store));
                match tokio::task::spawn_blocking(move || wal.snapshot(&store)).await {
                    Ok(Ok(())) => tracing::info!("snapshot written, covered log segments removed"),
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

    /// Event `index` of tenant "acme": an inbound e-mail of customer `c<index % customers>`, a
    /// minute after the previous one.
    fn email(index: usize, customers: usize) -> Interaction {
        Interaction {
            event_id: format!("e{index}"),
            tenant_id: "acme".into(),
            customer_id: format!("c{}", index % customers),
            channel: crate::domain::Channel::Email,
            kind: crate::domain::Kind::Message,
            direction: crate::domain::Direction::Inbound,
            occurred_at_ms: 1_767_225_600_000 + index as i64 * 60_000,
            text: String::new(),
            value: 0.0,
            author_followers: 0,
            thread_id: String::new(),
            reply_need: crate::domain::ReplyNeed::Unclear,
            urgency_cues: Default::default(),
            intent: None,
            language: None,
            identifiers: Vec::new(),
            agent_id: String::new(),
        }
    }

    /// Cluster mode's partition state: a store rebuilt from it answers as the one that wrote it,
    /// and a damaged copy is refused whole.
    #[test]
    fn a_partition_state_restores_the_same_answers() {
        let config = std::sync::Arc::new(crate::config::ScoringConfig::default());
        let written = crate::store::Store::new(std::sync::Arc::clone(&config), 16);
        for index in 0..40 {
            let mut event = email(index, 7);
            event.text = "my order never came, please help".into();
            written.apply(&event, None, event.occurred_at_ms, false);
        }
        let in_partition = |customer: &str| customer != "c3";
        let bytes = encode_partition_state(41, |put| {
            written.for_each_customer(|tenant, customer, history, profile, attributes| {
                if in_partition(customer) {
                    put(tenant, customer, history, profile, attributes)?;
                }
                Ok(())
            })
        })
        .unwrap();
        let restored = crate::store::Store::new(config, 16);
        let through = decode_partition_state(&bytes, "partition-0", |replayed| {
            crate::engine::recover(&restored, replayed).unwrap()
        })
        .unwrap();
        assert_eq!(through, 41);
        let as_of = 1_767_225_600_000 + 41 * 60_000;
        let query = crate::store::TopQuery {
            limit: 10,
            action: None,
            min_retention_risk: 0.0,
            as_of_ms: as_of,
            live: false,
            segment: None,
            channel: None,
            intent: None,
            language: None,
        };
        let ids = |top: Vec<(String, crate::scoring::Score)>| {
            top.into_iter()
                .map(|(id, score)| (id, score.priority))
                .collect::<Vec<_>>()
        };
        let expected: Vec<_> = ids(written.top_exact("acme", &query))
            .into_iter()
            .filter(|(id, _)| in_partition(id))
            .collect();
        assert_eq!(expected.len(), 6);
        assert_eq!(ids(restored.top_exact("acme", &query)), expected);
        assert_eq!(ids(restored.top("acme", &query)), expected);
        let mut damaged = bytes.clone();
        let at = damaged.len() - 3;
        damaged[at] ^= 0xff;
        assert!(decode_partition_state(&damaged, "partition-0", |_| {}).is_err());
    }

    #[test]
    fn file_versions_are_told_apart() {
        let path = Path::new("wal.log");
        let mut current = format_header().to_vec();
        current.extend(frame(b"one"));
        assert_eq!(
            file_body(&current, path).unwrap(),
            (&frame(b"one")[..], FORMAT_VERSION)
        );
        let legacy = frame(b"one");
        assert_eq!(file_body(&legacy, path).unwrap(), (&legacy[..], 0));
        // Empty, or cut inside the header: no records.
        for cut in 0..HEADER_BYTES {
            assert_eq!(file_body(&current[..cut], path).unwrap().0, &[] as &[u8]);
        }
        // A format-0 file shorter than a header is format 0 (a torn first record).
        assert_eq!(file_body(&legacy[..3], path).unwrap(), (&legacy[..3], 0));
        let mut newer = current.clone();
        newer[4] = FORMAT_VERSION as u8 + 1;
        let error = file_body(&newer, path).unwrap_err().to_string();
        assert!(
            error.contains(&format!("format {}", FORMAT_VERSION + 1)) && error.contains("wal.log"),
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
        let (wal, _) = Wal::open(&config, &dir, |_| {}).unwrap();
        let record = WalRecord {
            interaction: Some(record::LoggedInteraction::default()),
            ..WalRecord::default()
        };
        wal.append(&record).expect("the log is in place");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let error = wal.append(&record).unwrap_err().to_string();
        assert!(error.contains(WAL_FILE), "{error}");
        let store = Store::new(Arc::new(crate::config::ScoringConfig::default()), 16);
        assert!(wal.snapshot(&store).is_err());
        assert!(
            !dir.join(SNAPSHOT_FILE).exists(),
            "no empty snapshot written"
        );
    }

    /// D7: appends queued while the log is busy share one write and one fsync (each append paid its own
    /// fsync on a runtime worker before), and every one of them is durable once answered.
    #[test]
    fn queued_appends_share_fsyncs_and_all_survive() {
        const RECORDS: usize = 2_000;
        let dir = tempfile::tempdir().unwrap();
        let config = DurabilityConfig::default();
        assert_eq!(config.fsync, FsyncPolicy::Always);
        let (wal, _) = Wal::open(&config, dir.path(), |_| {}).unwrap();
        // The log held while the appends are queued, as a slow fsync would (on a fast disk or
        // tmpfs the writer could otherwise keep pace one record at a time).
        let held = wal.files.writer.lock().unwrap();
        let waits: Vec<Durable> = (0..RECORDS)
            .map(|index| wal.enqueue(&WalRecord::new(&email(index, 1), None)))
            .collect();
        drop(held);
        for wait in waits {
            wait.try_wait_blocking().expect("durable");
        }
        let fsyncs = wal.fsyncs_total();
        assert!(
            (1..=3).contains(&fsyncs),
            "{fsyncs} fsyncs for {RECORDS} appends"
        );
        drop(wal);
        let mut replayed = 0;
        let (_, recovered) = Wal::open(&config, dir.path(), |_| replayed += 1).unwrap();
        assert_eq!(replayed, RECORDS);
        assert_eq!(recovered.log_records, RECORDS);
    }

    /// D9: the snapshot was the log folded in (every event ever, rewritten under the append lock,
    /// replayed in full at start); now it is the state, so its size follows what the store keeps
    /// (at most `max_events_per_customer` events per customer), the log segments it covers are
    /// removed, and a restart from it and the log after it recovers the same scores.
    #[test]
    fn a_snapshot_is_the_state_not_the_history() {
        use crate::config::ScoringConfig;
        let config = Arc::new(ScoringConfig {
            max_events_per_customer: 40,
            ..ScoringConfig::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let durability = DurabilityConfig::default();
        let store = Store::new(Arc::clone(&config), 16);
        let (wal, _) = Wal::open(&durability, dir.path(), |_| {}).unwrap();
        let event = |index: usize| email(index, 2);
        let mut logged_bytes = 0;
        for index in 0..3_000 {
            let interaction = event(index);
            crate::engine::replay(&store, &interaction, None, false);
            let record = WalRecord::new(&interaction, None);
            logged_bytes += frame(&prost::Message::encode_to_vec(&record)).len();
            wal.append(&record).unwrap();
        }
        wal.snapshot(&store).unwrap();
        let snapshot_bytes = std::fs::metadata(dir.path().join(SNAPSHOT_FILE))
            .unwrap()
            .len() as usize;
        assert!(
            snapshot_bytes * 10 < logged_bytes,
            "snapshot {snapshot_bytes} B for {logged_bytes} B of log"
        );
        assert!(sealed_segments(dir.path()).unwrap().is_empty());
        // Events after the snapshot: in the log, replayed on top of the state.
        for index in 3_000..3_010 {
            let interaction = event(index);
            crate::engine::replay(&store, &interaction, None, false);
            wal.append(&WalRecord::new(&interaction, None)).unwrap();
        }
        drop(wal);
        let at = 1_767_225_600_000 + 4_000 * 60_000;
        let restarted = Store::new(Arc::clone(&config), 16);
        let (_, recovered) = Wal::open(&durability, dir.path(), |replayed| {
            crate::engine::recover(&restarted, replayed).unwrap()
        })
        .unwrap();
        assert_eq!(
            (recovered.snapshot_customers, recovered.log_records),
            (2, 10)
        );
        for customer in ["c0", "c1"] {
            assert_eq!(
                format!("{:?}", restarted.customer("acme", customer, at)),
                format!("{:?}", store.customer("acme", customer, at))
            );
        }
    }

    /// D12: a snapshot that cannot be written leaves no snapshot.tmp behind and its error keeps
    /// the OS error (here: snapshot.bin is a directory, so the rename fails).
    #[test]
    fn failed_snapshot_removes_its_temporary_file_and_keeps_the_os_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(SNAPSHOT_FILE)).unwrap();
        std::fs::write(dir.path().join(SNAPSHOT_FILE).join("x"), b"x").unwrap();
        let error = format!(
            "{:#}",
            write_state_file(dir.path(), 0, Vec::new(), Vec::new(), |_| Ok(()), Vec::new)
                .unwrap_err()
        );
        assert!(error.contains("os error"), "{error}");
        assert!(!dir.path().join(SNAPSHOT_TMP).exists());
    }

    /// D3: a deleted snapshot.bin next to a log lost every snapshotted event silently; now the
    /// start stops, naming the file.
    #[test]
    fn missing_snapshot_next_to_a_log_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let config = DurabilityConfig::default();
        drop(Wal::open(&config, dir.path(), |_| {}).unwrap());
        std::fs::remove_file(dir.path().join(SNAPSHOT_FILE)).unwrap();
        let error = Wal::open(&config, dir.path(), |_| {})
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains(SNAPSHOT_FILE), "{error}");
        // A fresh directory (neither file) still starts empty.
        let fresh = tempfile::tempdir().unwrap();
        assert!(Wal::open(&config, fresh.path(), |_| {}).is_ok());
    }

    /// A data directory as a running server leaves it after a kill -9 in the middle of a
    /// snapshot: `snapshot.bin` (customers c0..c9), sealed segments 2 and 3 after it (the seal of
    /// segment 1 is covered), and `wal.log` with records. Returns every event id logged.
    fn busy_directory(dir: &Path) -> Vec<String> {
        use crate::config::ScoringConfig;
        let store = Store::new(Arc::new(ScoringConfig::default()), 16);
        let config = DurabilityConfig::default();
        let (wal, _) = Wal::open(&config, dir, |_| {}).unwrap();
        let mut ids = Vec::new();
        let mut log = |wal: &Wal, range: std::ops::Range<usize>| {
            for index in range {
                let interaction = email(index, 10);
                crate::engine::replay(&store, &interaction, None, false);
                wal.append(&WalRecord::new(&interaction, None)).unwrap();
                ids.push(interaction.event_id.clone());
            }
        };
        log(&wal, 0..20);
        wal.snapshot(&store).unwrap();
        log(&wal, 20..30);
        wal.files.seal().unwrap();
        log(&wal, 30..40);
        wal.files.seal().unwrap();
        log(&wal, 40..50);
        ids
    }

    /// Opens `dir`, returning the event ids recovered or the refusal.
    fn recover_ids(dir: &Path, drop_damaged: bool) -> Result<Vec<String>, String> {
        let config = DurabilityConfig {
            drop_damaged,
            ..DurabilityConfig::default()
        };
        let mut ids = Vec::new();
        Wal::open(&config, dir, |replayed| match replayed {
            Replayed::Event { interaction, .. } => ids.push(interaction.event_id.clone()),
            Replayed::Customer { history, .. } => ids.extend(
                (0..history.summary().events_total)
                    .map(|n| format!("(a snapshot customer's event {n})")),
            ),
            _ => {}
        })
        .map(|_| ids)
        .map_err(|error| format!("{error:#}"))
    }

    /// Issue 24 item 3: each damage that no crash leaves refuses the start, naming the file,
    /// and changes nothing (a second start refuses again); `--drop-damaged` starts anyway.
    #[test]
    fn damage_refuses_the_start_naming_the_file() {
        let segment = |n: u64| format!("{SEGMENT_PREFIX}{n:020}{SEGMENT_SUFFIX}");
        type Damage = Box<dyn Fn(&Path)>;
        let cut = |name: &'static str, at: fn(&[u8]) -> usize| -> Damage {
            Box::new(move |dir: &Path| {
                let path = dir.join(name);
                let data = std::fs::read(&path).unwrap();
                std::fs::write(&path, &data[..at(&data)]).unwrap();
            })
        };
        // The offset where the last record starts: a cut there leaves whole records only.
        fn last_record_start(data: &[u8]) -> usize {
            let (payloads, _) = read_frames(&data[HEADER_BYTES..]).unwrap();
            data.len() - payloads.last().unwrap().len() - 8
        }
        let seg2: &'static str = Box::leak(segment(2).into_boxed_str());
        let seg3: &'static str = Box::leak(segment(3).into_boxed_str());
        let seg2b = seg2.to_string();
        let seg3b = seg3.to_string();
        let seg3c = seg3.to_string();
        let damages: Vec<(&str, &str, Damage)> = vec![
            ("snapshot emptied", SNAPSHOT_FILE, cut(SNAPSHOT_FILE, |_| 0)),
            (
                "snapshot cut in its header",
                SNAPSHOT_FILE,
                cut(SNAPSHOT_FILE, |_| 5),
            ),
            (
                "snapshot cut after its header",
                SNAPSHOT_FILE,
                cut(SNAPSHOT_FILE, |_| 8),
            ),
            (
                "snapshot cut at a record boundary",
                SNAPSHOT_FILE,
                cut(SNAPSHOT_FILE, last_record_start),
            ),
            ("segment emptied", seg2, cut(seg2, |_| 0)),
            (
                "segment cut at a record boundary",
                seg2,
                cut(seg2, last_record_start),
            ),
            (
                "segment missing from the sequence",
                seg2,
                Box::new(move |dir: &Path| std::fs::remove_file(dir.join(&seg2b)).unwrap()),
            ),
            (
                "segment renamed at or below the snapshot's",
                "segment 3",
                Box::new(move |dir: &Path| {
                    std::fs::rename(dir.join(&seg3b), dir.join(segment(1))).unwrap()
                }),
            ),
            (
                "last segment deleted",
                WAL_FILE,
                Box::new(move |dir: &Path| std::fs::remove_file(dir.join(&seg3c)).unwrap()),
            ),
            (
                "active log deleted",
                WAL_FILE,
                Box::new(|dir: &Path| std::fs::remove_file(dir.join(WAL_FILE)).unwrap()),
            ),
            ("active log emptied", WAL_FILE, cut(WAL_FILE, |_| 0)),
        ];
        for (what, named, damage) in damages {
            let dir = tempfile::tempdir().unwrap();
            let logged = busy_directory(dir.path());
            assert_eq!(
                recover_ids(dir.path(), false).map(|ids| ids.len()),
                Ok(logged.len())
            );
            let dir = tempfile::tempdir().unwrap();
            busy_directory(dir.path());
            damage(dir.path());
            let error = recover_ids(dir.path(), false).expect_err(what);
            assert!(error.contains(named), "{what}: {error}");
            assert!(error.contains("--drop-damaged"), "{what}: {error}");
            // Nothing changed: refused again.
            assert!(
                recover_ids(dir.path(), false).is_err(),
                "{what}: second start"
            );
            assert!(
                recover_ids(dir.path(), true).is_ok(),
                "{what}: --drop-damaged starts"
            );
        }
    }

    /// Issue 24 item 2: a second open of a data directory in use is refused, naming the pid,
    /// and changes no file; once the first is closed it opens.
    #[test]
    fn a_data_directory_in_use_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = DurabilityConfig::default();
        let (first, _) = Wal::open(&config, dir.path(), |_| {}).unwrap();
        first.append(&WalRecord::new(&email(1, 2), None)).unwrap();
        let before = std::fs::read(dir.path().join(WAL_FILE)).unwrap();
        let error = Wal::open(&config, dir.path(), |_| {})
            .err()
            .expect("refused")
            .to_string();
        assert!(
            error.contains(&format!("pid {}", std::process::id())),
            "{error}"
        );
        assert_eq!(std::fs::read(dir.path().join(WAL_FILE)).unwrap(), before);
        drop(first);
        assert!(Wal::open(&config, dir.path(), |_| {}).is_ok());
    }

    /// Found by the model checker (kill -9 during a snapshot): a seal stopped after it wrote the
    /// active log's closing mark and its successor, before the renames, is a crash's state, not
    /// damage: the start reads it whole, seals it once, and the next start reads it again.
    #[test]
    fn a_seal_stopped_before_its_renames_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let logged = busy_directory(dir.path());
        let log = dir.path().join(WAL_FILE);
        let mut active = OpenOptions::new().append(true).open(&log).unwrap();
        active.write_all(&seal_mark(4, 10)).unwrap();
        prepare_log(dir.path(), 5).unwrap();
        assert_eq!(
            recover_ids(dir.path(), false).map(|ids| ids.len()),
            Ok(logged.len())
        );
        assert_eq!(
            recover_ids(dir.path(), false).map(|ids| ids.len()),
            Ok(logged.len())
        );
    }
}
