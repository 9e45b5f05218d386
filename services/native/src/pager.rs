//! The auditor's pages, compiled: what services/auditor/handlers.py does message by message in Python (the
//! record built from the consumed message, personal data sealed under its subject's key and redacted, the record
//! sealed onto the chain and the Merkle tree), for a run of messages at a time, written straight into the page
//! being filled. Byte for byte the Python path (tests/unit/auditor/test_pages.py holds them equal); what it does
//! not do — a signed act to attest, a topic outside the catalogue, a message the client cannot read — stops the
//! run, and Python audits that message itself.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use super::consumer::{ConsumedMessage, Fields};
use super::{
    blocks, hex_string, seal_record, sha256, write_bytes, Frontier, Reader, Record, Redactor,
    Sealed, HEADER_LEN, MARKER,
};

const OVERSIZE_HEADER: &str = "mlbus.audit.oversize";
const CLAIM_CHARS: usize = 256; // decide.CLAIM_CHARS
const SUBJECT_CHARS: usize = 256; // erasure.SUBJECT_CHARS
const BLOCK: u64 = 256;

/// Why a run stopped: at the end of the messages; when it had sealed as many records as it had room for; when
/// the next record would not fit in the page's bytes; at a message Python audits itself.
const END: u8 = 0;
const ROOM: u8 = 1;
const BYTES: u8 = 2;
const SPECIAL: u8 = 3;

/// merkle.Frontier in compiled code, for the auditor's Log (the same size, hashes, append and root).
#[pyclass(module = "mlbus_native", name = "Frontier")]
pub(crate) struct PyFrontier {
    inner: Frontier,
}

#[pymethods]
impl PyFrontier {
    #[new]
    #[pyo3(signature = (size = 0, hashes = Vec::new()))]
    fn new(size: u64, hashes: Vec<Vec<u8>>) -> PyResult<Self> {
        if hashes.len() != size.count_ones() as usize {
            return Err(PyValueError::new_err(format!(
                "a frontier of {size} leaves has {} hashes, not {}", size.count_ones(), hashes.len())));
        }
        let hashes = hashes
            .into_iter()
            .map(|h| <[u8; 32]>::try_from(h.as_slice()).map_err(|_| PyValueError::new_err("a hash is 32 bytes")))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyFrontier { inner: Frontier { size, hashes } })
    }

    #[getter]
    fn size(&self) -> u64 {
        self.inner.size
    }

    #[getter]
    fn hashes<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        self.inner.hashes.iter().map(|h| PyBytes::new(py, h)).collect()
    }

    fn append(&mut self, leaf: &[u8]) -> PyResult<()> {
        self.inner.append(leaf.try_into().map_err(|_| PyValueError::new_err("a leaf hash is 32 bytes"))?);
        Ok(())
    }

    fn root<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.root())
    }
}

/// How the auditor treats one topic's messages (by its name on the broker).
struct Route {
    logical: String,
    special: bool,                         // signed acts (Python attests them), or a topic Python must see
    redaction: Option<PyObject>,           // a personal topic: its erasure.Redaction (its compiled part used inline)
}

/// The auditor's pager: routes by topic, AuditRecord's single-object prefix, the size past which a message is
/// on record by size and digest only.
#[pyclass(module = "mlbus_native")]
pub(crate) struct Pager {
    prefix: Vec<u8>,
    routes: HashMap<String, Route>,
    max_record_bytes: usize,
    headers_of: PyObject,                  // services.bus.consumed.headers_of
    // consumed.unreadable and the messages it remembers (consumed._unreadable): with them the headers are read
    // here, without a call to headers_of per message (a fifth of the auditor's time under load, 2026-12-06)
    unreadable: Option<(PyObject, Py<PyDict>)>,
    random: Vec<u8>,                       // OS randomness drawn in bulk, used from the end
}

/// A consumed message's fields: a native consumer's message's own (no Python), or copied from a client's Message.
type Consumed = Arc<Fields>;

fn consumed(message: &Bound<'_, PyAny>, headers_of: &PyObject,
            unreadable: Option<&(PyObject, Py<PyDict>)>) -> PyResult<Consumed> {
    if let Ok(native) = message.downcast::<ConsumedMessage>() {
        let fields = &native.get().fields;
        if fields.headers.is_none() {
            return Err(PyValueError::new_err("headers unreadable")); // Python audits it (consumed.headers_of)
        }
        return Ok(fields.clone());
    }
    let py = message.py();
    let timestamp: Bound<'_, PyTuple> = message.call_method0(intern!(py, "timestamp"))?.downcast_into()?;
    let headers = match unreadable {
        Some((unreadable, remembered)) => read_headers(message, unreadable, remembered.bind(py))?,
        // Through consumed.headers_of, never the client directly: a header key that is not UTF-8 makes the client
        // raise once and leaves a list that must not be read again (headers_of remembers such a message).
        None => headers_of.call1(py, (message,))?.extract::<Option<Vec<(String, Option<PyBackedBytes>)>>>(py)?
            .unwrap_or_default().into_iter().map(|(k, v)| (k, owned(v))).collect(),
    };
    let topic: Option<PyBackedStr> = message.call_method0(intern!(py, "topic"))?.extract()?;
    Ok(Arc::new(Fields {
        topic: Arc::from(topic.as_deref().unwrap_or_default()),
        partition: message.call_method0(intern!(py, "partition"))?.extract()?,
        offset: message.call_method0(intern!(py, "offset"))?.extract()?,
        timestamp: (timestamp.get_item(0)?.extract()?, timestamp.get_item(1)?.extract()?),
        key: owned(message.call_method0(intern!(py, "key"))?.extract()?),
        value: owned(message.call_method0(intern!(py, "value"))?.extract()?),
        headers: Some(headers),
    }))
}

/// Bytes copied out of a Python bytes object in one go (extracting a Vec<u8> reads them item by item).
fn owned(bytes: Option<PyBackedBytes>) -> Option<Vec<u8>> {
    bytes.map(|b| b.to_vec())
}

/// The topic a message was read from, for its route: a native message's own, else the client's.
fn topic_of(message: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    if let Ok(native) = message.downcast::<ConsumedMessage>() {
        return Ok(native.get().topic_name().map(str::to_string));
    }
    message.call_method0(intern!(message.py(), "topic"))?.extract()
}

/// A consumed message's headers as consumed.headers_of reads them, straight from the client: a message
/// headers_of remembers as unreadable, or whose headers the client cannot read (a header key that is not UTF-8:
/// handed to consumed.unreadable, which remembers it, so that its broken list is never read again), is an error
/// here — the pager leaves it to Python, which audits it with UNREADABLE_HEADERS as before.
fn read_headers(message: &Bound<'_, PyAny>, unreadable: &PyObject, remembered: &Bound<'_, PyDict>)
    -> PyResult<Vec<(String, Option<Vec<u8>>)>> {
    let py = message.py();
    if !remembered.is_empty() {
        if let Some(known) = remembered.get_item(message.as_ptr() as usize)? {
            if known.is(message) {
                return Err(PyValueError::new_err("headers unreadable"));
            }
        }
    }
    let listed = match message.call_method0(intern!(py, "headers")) {
        Ok(listed) => listed,
        Err(_) => {
            unreadable.call1(py, (message,))?;
            return Err(PyValueError::new_err("headers unreadable"));
        }
    };
    if listed.is_none() {
        return Ok(Vec::new());
    }
    let listed = listed.downcast_into::<PyList>()?;
    let mut headers = Vec::with_capacity(listed.len());
    for pair in listed.iter() {
        let pair = pair.downcast_into::<PyTuple>()?;
        headers.push((pair.get_item(0)?.extract()?, owned(pair.get_item(1)?.extract()?)));
    }
    Ok(headers)
}

/// A header's value as decide.header reads it: the first of that name with a value, decoded as UTF-8 with
/// U+FFFD for what is not, cut to CLAIM_CHARS characters.
fn header(headers: &[(String, Option<Vec<u8>>)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, v)| &**k == name && v.is_some())
        .map(|(_, v)| String::from_utf8_lossy(v.as_deref().unwrap_or_default()).chars().take(CLAIM_CHARS).collect())
}

/// erasure.subject_of: the key as text, or "sha256:" and its digest for a key not UTF-8, over SUBJECT_CHARS,
/// holding a NUL (the separator of a shard's data key names) or itself beginning "sha256:" (else it would name the
/// data key of the key it digests).
fn subject_of(key: Option<&[u8]>) -> String {
    match key {
        None | Some(b"") => String::new(),
        Some(key) => match std::str::from_utf8(key) {
            Ok(text)
                if text.chars().count() <= SUBJECT_CHARS && !text.contains('\0') && !text.starts_with("sha256:") =>
            {
                text.to_string()
            }
            _ => format!("sha256:{}", hex_string(&sha256(&[key]))),
        },
    }
}

#[pymethods]
impl Pager {
    /// `routes`: physical topic → (catalogue name, special, the topic's Redaction or None); `prefix`: the marker
    /// and AuditRecord's fingerprint; `max_record_bytes`: edge.MAX_RECORD_BYTES.
    /// `unreadable`, `remembered`: consumed.unreadable and consumed._unreadable, to read headers without headers_of.
    #[new]
    #[pyo3(signature = (prefix, routes, max_record_bytes, headers_of, unreadable = None, remembered = None))]
    fn new(prefix: Vec<u8>, routes: HashMap<String, (String, bool, Option<PyObject>)>, max_record_bytes: usize,
           headers_of: PyObject, unreadable: Option<PyObject>, remembered: Option<Py<PyDict>>) -> Self {
        let routes = routes
            .into_iter()
            .map(|(topic, (logical, special, redaction))| (topic, Route { logical, special, redaction }))
            .collect();
        let unreadable = unreadable.zip(remembered);
        Pager { prefix, routes, max_record_bytes, headers_of, unreadable, random: Vec::new() }
    }

    /// Seal `messages[start:]` onto the chain (`sequence`, `prev_hash`), the tree and the block being filled
    /// (each complete block's root appended to `blocks`), at most `room` records and `bytes_left` bytes of page
    /// items (the first record of an empty page fits whatever its size). Data keys are taken from `keys`
    /// (subject → key), a missing one made there. Returns (the index it stopped at, the page items it wrote —
    /// each AuditRecord as Avro bytes, the count, the last chain hash, the subjects it made a key for, why it
    /// stopped).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (messages, start, room, bytes_left, page_empty, audited_at, sequence, prev_hash, tree, block,
                        blocks, keys))]
    fn seal_run<'py>(
        &mut self, py: Python<'py>, messages: &Bound<'py, PyList>, start: usize, room: usize, bytes_left: usize,
        page_empty: bool, audited_at: i64, sequence: i64, prev_hash: &str, mut tree: PyRefMut<'py, PyFrontier>,
        mut block: PyRefMut<'py, PyFrontier>, blocks: &Bound<'py, PyList>, keys: &Bound<'py, PyDict>,
    ) -> PyResult<(usize, Bound<'py, PyBytes>, usize, String, Vec<String>, u8)> {
        let hash = super::from_hex(prev_hash).ok_or_else(|| PyValueError::new_err("prev_hash is not a SHA-256"))?;
        // What needs Python (the messages' fields, the data keys, a redaction the compiled plan cannot do) is read
        // first, holding the GIL; the sealing, hashing and encoding then run without it, so that the auditor's
        // other shards go on meanwhile (they waited for this run's GIL: ~40 % of a shard's time under load).
        let (pending, stopped) = self.pending(py, messages, start, room, bytes_left, keys)?;
        // the tree and block as they were stay put if sealing fails (no OS randomness): nothing of the run is kept
        let chain = Chain { hash, hash_hex: prev_hash.to_string(), tree: tree.inner.clone(), block: block.inner.clone() };
        let (prefix, random) = (&self.prefix, &mut self.random);
        let sealed = py.allow_threads(|| seal_pending(&pending, prefix, random, chain, audited_at, sequence,
                                                      bytes_left, page_empty));
        let Run { items, count, chain, roots, made, stopped_by } = sealed?;
        tree.inner = chain.tree;
        block.inner = chain.block;
        for root in &roots {
            blocks.append(PyBytes::new(py, root))?;
        }
        for (subject, key) in &made {
            keys.set_item(subject, PyBytes::new(py, key))?;
        }
        let why = if count < pending.len() { stopped_by } else { stopped };
        Ok((start + count, PyBytes::new(py, &items), count, chain.hash_hex,
            made.into_iter().map(|(subject, _)| subject).collect(), why))
    }
}

/// A message read for sealing, with what sealing it needs from Python.
struct Pending {
    logical: String,
    m: Consumed,
    oversize: Option<String>,
    personal: bool,
    // personal and not oversize: its subject, its data key if it has one, its value redacted
    subject: Option<String>,
    key: Option<PyBackedBytes>,
    redacted: Option<Vec<u8>>,
}

/// The chain's head, the tree and the block being filled, as a run leaves them.
struct Chain {
    hash: [u8; 32],
    hash_hex: String,
    tree: Frontier,
    block: Frontier,
}

/// What a run sealed: its page items, how many records, the chain after them, the roots of the blocks it
/// completed, the data keys it made (subject, key) in order of first use, why it stopped before the end.
struct Run {
    items: Vec<u8>,
    count: usize,
    chain: Chain,
    roots: Vec<[u8; 32]>,
    made: Vec<(String, Vec<u8>)>,
    stopped_by: u8,
}

impl Pager {
    /// `messages[start:]` read for sealing, at most `room`, and no further than the page's `bytes_left` can hold:
    /// a record takes at least its message's bytes (but an oversize message's), so once those pass what is left,
    /// the messages after cannot be sealed in this run (read now, the next run would read them again: each message
    /// read ~n/10 times when n large messages fill pages of ten). Up to the first message Python audits itself.
    /// Why the reading stopped: SPECIAL, ROOM, BYTES or END.
    fn pending(&self, py: Python<'_>, messages: &Bound<'_, PyList>, start: usize, room: usize, bytes_left: usize,
               keys: &Bound<'_, PyDict>) -> PyResult<(Vec<Pending>, u8)> {
        let mut pending = Vec::with_capacity(room.min(messages.len().saturating_sub(start)));
        let mut read_bytes = 0usize;
        let mut index = start;
        while index < messages.len() {
            if pending.len() == room {
                return Ok((pending, ROOM));
            }
            let message = messages.get_item(index)?;
            let topic = topic_of(&message)?;
            let route = match topic.as_deref().and_then(|t| self.routes.get(t)) {
                Some(route) if !route.special => route,
                _ => return Ok((pending, SPECIAL)),
            };
            let Ok(m) = consumed(&message, &self.headers_of, self.unreadable.as_ref()) else {
                return Ok((pending, SPECIAL)); // e.g. a header key that is not UTF-8: consumed.headers_of's business
            };
            let size = m.key.as_deref().map_or(0, <[u8]>::len)
                + m.value.as_deref().map_or(0, <[u8]>::len)
                + m.pairs().iter().map(|(k, v)| k.len() + v.as_deref().map_or(0, <[u8]>::len)).sum::<usize>();
            let oversize = (size > self.max_record_bytes).then(|| {
                let mut parts: Vec<&[u8]> = vec![m.key.as_deref().unwrap_or_default(), m.value.as_deref().unwrap_or_default()];
                for (k, v) in m.pairs() {
                    parts.push(k.as_bytes());
                    parts.push(v.as_deref().unwrap_or_default());
                }
                format!("{size} sha256:{}", hex_string(&sha256(&parts)))
            });
            // Personal data: sealed under its subject's key, the value kept redacted.
            let (mut subject, mut key, mut redacted) = (None, None, None);
            if let (None, Some(redaction), Some(value)) = (&oversize, &route.redaction, m.value.as_deref()) {
                let name = subject_of(m.key.as_deref());
                if let Some(known) = keys.get_item(&name)? {
                    let known: PyBackedBytes = known.extract()?;
                    if known.len() != 32 {
                        return Ok((pending, SPECIAL)); // not a 32-byte key: Python's business (AES-128/192, or a refusal)
                    }
                    key = Some(known);
                }
                redacted = redact(py, redaction, value)?;
                subject = Some(name);
            }
            // its record holds every byte of it (a personal value: as ciphertext); an oversize one's, its digest only
            read_bytes += if oversize.is_none() { size } else { 0 };
            pending.push(Pending { logical: route.logical.clone(), personal: route.redaction.is_some(), m, oversize,
                                   subject, key, redacted });
            index += 1;
            if read_bytes > bytes_left {
                return Ok((pending, BYTES));
            }
        }
        Ok((pending, END))
    }
}

/// Seal the pending messages onto the chain, the tree and the block (no Python here: run without the GIL),
/// into page items of at most `bytes_left` bytes (the first record of an empty page fits whatever its size).
#[allow(clippy::too_many_arguments)]
fn seal_pending(pending: &[Pending], prefix: &[u8], random: &mut Vec<u8>, mut chain: Chain, audited_at: i64,
                sequence: i64, bytes_left: usize, page_empty: bool) -> PyResult<Run> {
    let mut items: Vec<u8> = Vec::with_capacity(bytes_left.min(pending.len().saturating_mul(2048)).min(4 << 20));
    let mut encoded: Vec<u8> = Vec::with_capacity(4096);
    let mut made: Vec<(String, Vec<u8>)> = Vec::new();
    let mut made_at: HashMap<&str, usize> = HashMap::new(); // subject → its place in `made`
    let mut roots = Vec::new();
    let mut count = 0usize;
    let mut stopped_by = END;
    for p in pending {
        let m = &p.m;
        let mut sealed: Option<(&str, Vec<u8>, Vec<u8>)> = None;
        if let (Some(subject), Some(value)) = (p.subject.as_deref(), m.value.as_deref()) {
            let key: &[u8] = match (&p.key, made_at.get(subject)) {
                (Some(key), _) => key,
                (None, Some(&at)) => &made[at].1,
                (None, None) => {
                    made_at.insert(subject, made.len());
                    made.push((subject.to_string(), draw(random, 32)?));
                    &made[made.len() - 1].1
                }
            };
            let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| PyValueError::new_err("a data key is not 32 bytes"))?;
            let nonce = draw(random, 12)?;
            let ciphertext = cipher
                .encrypt(Nonce::from_slice(&nonce), Payload { msg: value, aad: subject.as_bytes() })
                .map_err(|_| PyValueError::new_err("AES-GCM refused to seal"))?;
            sealed = Some((subject, nonce, ciphertext));
        }
        let oversize_headers;
        let (key, headers, value, actor, record_type);
        match &p.oversize {
            Some(digest) => {
                oversize_headers = [(OVERSIZE_HEADER, Some(digest.as_bytes()))];
                key = None;
                headers = oversize_headers.to_vec();
                value = None;
                actor = "unverified:unknown".to_string();
                record_type = None;
            }
            None => {
                key = m.key.as_deref();
                headers = m.pairs().iter().map(|(k, v)| (&**k, v.as_deref())).collect();
                value = if p.personal { p.redacted.as_deref() } else { m.value.as_deref() };
                let source = header(m.pairs(), "ce_source").filter(|s| !s.is_empty());
                actor = format!("unverified:{}", source.as_deref().unwrap_or("unknown"));
                record_type = header(m.pairs(), "ce_type");
            }
        }
        let mut next_hex = String::new();
        let mut record = Record {
            sequence: sequence + count as i64 + 1, audited_at, source_topic: &p.logical,
            source_partition: m.partition, source_offset: m.offset, source_timestamp: m.timestamp.1, key, headers,
            value, actor: &actor, record_type: record_type.as_deref(),
            sealed: sealed.as_ref().map(|(subject, nonce, ciphertext)| Sealed { subject, nonce, ciphertext }),
            prev_hash: &chain.hash_hex, hash: "",
        };
        let (next, leaf) = seal_record(&mut record, &chain.hash, &mut next_hex, prefix, &mut encoded);
        let framed = avro_long_len(encoded.len()) + encoded.len();
        if !(page_empty && count == 0) && items.len() + framed > bytes_left {
            stopped_by = BYTES;
            break;
        }
        write_bytes(&mut items, &encoded);
        chain.tree.append(leaf);
        chain.block.append(leaf);
        if chain.block.size == BLOCK {
            roots.push(chain.block.root());
            chain.block = Frontier::default();
        }
        chain.hash = next;
        chain.hash_hex = next_hex;
        count += 1;
    }
    Ok(Run { items, count, chain, roots, made, stopped_by })
}

/// `n` bytes of the OS's randomness, drawn in bulk and used from the end.
fn draw(random: &mut Vec<u8>, n: usize) -> PyResult<Vec<u8>> {
    if random.len() < n {
        let mut fresh = vec![0u8; 4096.max(n)];
        getrandom::getrandom(&mut fresh).map_err(|e| PyValueError::new_err(format!("no OS randomness: {e}")))?;
        *random = fresh;
    }
    Ok(random.split_off(random.len() - n))
}

/// How many bytes an Avro long (zigzag varint) of this non-negative length takes.
fn avro_long_len(n: usize) -> usize {
    let mut z = (n as u64) << 1;
    let mut len = 1;
    while z >= 0x80 {
        z >>= 7;
        len += 1;
    }
    len
}

/// erasure.Redaction's result: its compiled Redactor inline, Python's redaction for what that does not read.
fn redact(py: Python<'_>, redaction: &PyObject, value: &[u8]) -> PyResult<Option<Vec<u8>>> {
    let redaction = redaction.bind(py);
    let compiled = redaction.getattr(intern!(py, "compiled"))?;
    if let Ok(redactor) = compiled.downcast::<Redactor>() {
        let redactor = redactor.borrow();
        if let Some(body) = value.strip_prefix(redactor.prefix.as_slice()) {
            let mut r = Reader { buf: body, pos: 0 };
            let mut out = Vec::with_capacity(value.len());
            out.extend_from_slice(&redactor.prefix);
            if super::transcode(&mut r, &redactor.plan, &mut out).is_some() && r.pos == body.len() {
                return Ok(Some(out));
            }
        }
    }
    redaction.call1((PyBytes::new(py, value),))?.extract()
}

/// A page's AuditRecord values (audit_log.leaves reads them so in Python): None when the value is not an
/// AuditPage of this prefix, or its framing does not read.
#[pyfunction]
pub(crate) fn page_records<'py>(py: Python<'py>, value: &[u8], prefix: &[u8]) -> Option<(i64, Vec<Bound<'py, PyBytes>>)> {
    let body = value.strip_prefix(prefix)?;
    let mut r = Reader { buf: body, pos: 0 };
    let first = r.long()?;
    let mut records = Vec::new();
    let read: Result<_, Infallible> = blocks(&mut r, |r| Ok(r.bytes().map(|b| records.push(PyBytes::new(py, b)))));
    read.ok()??;
    (r.pos == body.len()).then_some((first, records))
}

/// (sequence, source topic) of one AuditRecord value of this fingerprint, None where the whole record does not
/// read here (Python's decoder then reads it, or refuses it: the same answer either way).
#[pyfunction]
pub(crate) fn record_topic(value: &[u8], fingerprint: &[u8]) -> Option<(i64, String)> {
    if value.len() < HEADER_LEN || value[..2] != MARKER || &value[2..HEADER_LEN] != fingerprint {
        return None;
    }
    super::read_record(&value[HEADER_LEN..]).map(|record| (record.sequence, record.source_topic.to_string()))
}
