//! mlbus's compiled hot paths, byte for byte what the pure-Python code computes (services/domain/audit.py,
//! merkle.py): an AuditRecord's Avro body read in one pass, its canonical JSON, the hash chain and the RFC 9162
//! Merkle frontier. `mlbus audit verify` feeds whole batches of audit.log's raw values to a `ChainWalk`; a
//! value it cannot read (another writer schema, a string that is not UTF-8) comes back as "unreadable" and
//! Python decodes that one and hands over its canonical bytes. The auditor seals with `seal`.
//! Also: Avro records read (`Decoder`) and written (`Encoder`) as fastavro does, from plans of their schemas
//! (services/bus/native.py), and random forests walked as scikit-learn walks them (`Forest`,
//! services/domain/forest.py).

use std::convert::Infallible;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use sha2::{Digest, Sha256};

mod consumer;
mod pager;

const MARKER: [u8; 2] = [0xc3, 0x01];
const HEADER_LEN: usize = 10;
const GENESIS: [u8; 32] = [0; 32];
const HEX: &[u8; 16] = b"0123456789abcdef";

// ---------------------------------------------------------------- Avro binary, the fields AuditRecord uses

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn long(&mut self) -> Option<i64> {
        let mut value: u64 = 0;
        let mut shift = 0;
        loop {
            let byte = *self.buf.get(self.pos)?;
            self.pos += 1;
            if shift >= 64 {
                return None;
            }
            value |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Some(((value >> 1) as i64) ^ -((value & 1) as i64))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.long()?).ok()?;
        let end = self.pos.checked_add(len)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// A ["null", T] union: None for null, Some(()) when T follows.
    fn present(&mut self) -> Option<bool> {
        match self.long()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

struct Sealed<'a> {
    subject: &'a str,
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

struct Record<'a> {
    sequence: i64,
    audited_at: i64,
    source_topic: &'a str,
    source_partition: i64,
    source_offset: i64,
    source_timestamp: i64,
    key: Option<&'a [u8]>,
    headers: Vec<(&'a str, Option<&'a [u8]>)>,
    value: Option<&'a [u8]>,
    actor: &'a str,
    record_type: Option<&'a str>,
    sealed: Option<Sealed<'a>>,
    prev_hash: &'a str,
    hash: &'a str,
}

fn optional_bytes<'a>(r: &mut Reader<'a>) -> Option<Option<&'a [u8]>> {
    Some(if r.present()? { Some(r.bytes()?) } else { None })
}

/// The body of an AuditRecord as schemas/AuditRecord.avsc writes it (fields in declaration order).
fn read_record(body: &[u8]) -> Option<Record<'_>> {
    let mut r = Reader { buf: body, pos: 0 };
    let sequence = r.long()?;
    let audited_at = r.long()?;
    let source_topic = r.string()?;
    let source_partition = r.long()?;
    if i32::try_from(source_partition).is_err() {
        return None;
    }
    let source_offset = r.long()?;
    let source_timestamp = r.long()?;
    let key = optional_bytes(&mut r)?;
    let mut headers = Vec::new();
    loop {
        let mut count = r.long()?;
        if count == 0 {
            break;
        }
        if count < 0 {
            count = count.checked_neg()?;
            r.long()?; // the block's size in bytes
        }
        for _ in 0..count {
            let name = r.string()?;
            headers.push((name, optional_bytes(&mut r)?));
        }
    }
    let value = optional_bytes(&mut r)?;
    let actor = r.string()?;
    let record_type = if r.present()? { Some(r.string()?) } else { None };
    let sealed = if r.present()? {
        Some(Sealed { subject: r.string()?, nonce: r.bytes()?, ciphertext: r.bytes()? })
    } else {
        None
    };
    let prev_hash = r.string()?;
    let hash = r.string()?;
    if r.pos != body.len() {
        return None; // bytes left after the record: codec.decode refuses it, so Python reads (and refuses) it
    }
    Some(Record {
        sequence, audited_at, source_topic, source_partition, source_offset, source_timestamp, key, headers,
        value, actor, record_type, sealed, prev_hash, hash,
    })
}

// ---------------------------------------------------------------- Avro binary, written as fastavro writes it

fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

fn write_optional_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => write_long(out, 0),
        Some(b) => {
            write_long(out, 1);
            write_bytes(out, b);
        }
    }
}

/// The body of an AuditRecord (schemas/AuditRecord.avsc), fields in declaration order; arrays as one block.
fn write_record(out: &mut Vec<u8>, rec: &Record) {
    write_long(out, rec.sequence);
    write_long(out, rec.audited_at);
    write_bytes(out, rec.source_topic.as_bytes());
    write_long(out, rec.source_partition);
    write_long(out, rec.source_offset);
    write_long(out, rec.source_timestamp);
    write_optional_bytes(out, rec.key);
    if !rec.headers.is_empty() {
        write_long(out, rec.headers.len() as i64);
        for (name, value) in &rec.headers {
            write_bytes(out, name.as_bytes());
            write_optional_bytes(out, *value);
        }
    }
    write_long(out, 0);
    write_optional_bytes(out, rec.value);
    write_bytes(out, rec.actor.as_bytes());
    write_optional_bytes(out, rec.record_type.map(str::as_bytes));
    match &rec.sealed {
        None => write_long(out, 0),
        Some(sealed) => {
            write_long(out, 1);
            write_bytes(out, sealed.subject.as_bytes());
            write_bytes(out, sealed.nonce);
            write_bytes(out, sealed.ciphertext);
        }
    }
    write_bytes(out, rec.prev_hash.as_bytes());
    write_bytes(out, rec.hash.as_bytes());
}

// ---------------------------------------------------------------- redaction (erasure.py's redacted)

/// A value's type as erasure.redaction_plan describes it (Python builds the plan from the schema).
enum Ty {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    Str,
    // a long within these bounds (what datetime holds), its datetime maker, and (for writing) what turns a value
    // into that long as fastavro would, or None where the value is not one it turns so plainly
    Timestamp(i64, i64, PyObject, Option<PyObject>),
    Map(Box<Ty>),
    Array(Box<Ty>),
    Nullable(usize, Box<Ty>), // ["null", T] or [T, "null"]: the null branch's index
    // field types, names and defaults (what fastavro writes for a field the value lacks), in order
    Record(Vec<Ty>, Vec<Py<PyString>>, Vec<Option<PyObject>>),
    Enum(i64, Vec<Py<PyString>>),
    Fixed(usize),
    Blank(Box<Ty>, Vec<u8>), // a personal field: read (and checked), then written as these bytes
}

impl<'py> FromPyObject<'py> for Ty {
    fn extract_bound(plan: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(name) = plan.extract::<String>() {
            return Ok(match name.as_str() {
                "null" => Ty::Null,
                "boolean" => Ty::Boolean,
                "int" => Ty::Int,
                "long" => Ty::Long,
                "float" => Ty::Float,
                "double" => Ty::Double,
                "bytes" => Ty::Bytes,
                "string" => Ty::Str,
                other => return Err(PyValueError::new_err(format!("no such type in a plan: {other}"))),
            });
        }
        let tag: String = plan.get_item(0)?.extract()?;
        let arg = plan.get_item(1)?;
        Ok(match tag.as_str() {
            "timestamp" => Ty::Timestamp(
                arg.extract()?,
                plan.get_item(2)?.extract()?,
                plan.get_item(3)?.unbind(),
                if plan.len()? > 4 { Some(plan.get_item(4)?.unbind()) } else { None },
            ),
            "map" => Ty::Map(Box::new(arg.extract()?)),
            "array" => Ty::Array(Box::new(arg.extract()?)),
            "nullable" => Ty::Nullable(arg.extract()?, Box::new(plan.get_item(2)?.extract()?)),
            "record" => {
                let fields: Vec<Ty> = arg.extract()?;
                // ("record", types, names[, defaults]): each default () for none, (value,) for one
                let defaults = if plan.len()? > 3 {
                    plan.get_item(3)?
                        .try_iter()?
                        .map(|entry| {
                            let entry = entry?;
                            Ok(if entry.len()? == 1 { Some(entry.get_item(0)?.unbind()) } else { None })
                        })
                        .collect::<PyResult<Vec<_>>>()?
                } else {
                    fields.iter().map(|_| None).collect()
                };
                Ty::Record(fields, plan.get_item(2)?.extract()?, defaults)
            }
            "enum" => Ty::Enum(arg.extract()?, plan.get_item(2)?.extract()?),
            "fixed" => Ty::Fixed(arg.extract()?),
            "blank" => Ty::Blank(Box::new(arg.extract()?), plan.get_item(2)?.extract()?),
            other => return Err(PyValueError::new_err(format!("no such type in a plan: {other}"))),
        })
    }
}

/// Read one value of `ty` and write it as fastavro writes what it decoded: longs re-encoded, maps and arrays
/// as one block, personal fields blank. None where Python's decoder would refuse the bytes, or where its
/// round trip would differ (a map's repeated key: a dict keeps the last) — Python then redacts it itself.
fn transcode<'a>(r: &mut Reader<'a>, ty: &Ty, out: &mut Vec<u8>) -> Option<()> {
    match ty {
        Ty::Null => {}
        Ty::Boolean => {
            let b = *r.buf.get(r.pos)?;
            if b > 1 {
                return None;
            }
            r.pos += 1;
            out.push(b);
        }
        Ty::Int | Ty::Long => write_long(out, r.long()?),
        Ty::Timestamp(low, high, _, _) => {
            let t = r.long()?;
            if t < *low || t > *high {
                return None;
            }
            write_long(out, t);
        }
        Ty::Float => {
            let raw: [u8; 4] = r.buf.get(r.pos..r.pos + 4)?.try_into().ok()?;
            r.pos += 4;
            let mut bits = u32::from_le_bytes(raw);
            if f32::from_bits(bits).is_nan() {
                bits |= 0x0040_0000; // through a Python float (a double), a signalling NaN comes back quiet
            }
            out.extend_from_slice(&bits.to_le_bytes());
        }
        Ty::Double => {
            out.extend_from_slice(r.buf.get(r.pos..r.pos + 8)?);
            r.pos += 8;
        }
        Ty::Bytes => write_bytes(out, r.bytes()?),
        Ty::Str => write_bytes(out, r.string()?.as_bytes()),
        Ty::Map(values) => {
            let mut items = Vec::new();
            let mut keys = std::collections::HashSet::new();
            let read: Result<_, Infallible> = blocks(r, |r| {
                let key = r.string();
                Ok(key.filter(|key| keys.insert(*key)).and_then(|key| {
                    write_bytes(&mut items, key.as_bytes());
                    transcode(r, values, &mut items)
                }))
            });
            read.ok()??;
            write_block(out, keys.len(), &items);
        }
        Ty::Array(item) => {
            let mut items = Vec::new();
            let read: Result<_, Infallible> = blocks(r, |r| Ok(transcode(r, item, &mut items)));
            let count = read.ok()??;
            write_block(out, count, &items);
        }
        Ty::Nullable(null_index, branch) => {
            let index = r.long()?;
            if index == *null_index as i64 {
                write_long(out, index);
            } else if index == 1 - *null_index as i64 {
                write_long(out, index);
                transcode(r, branch, out)?;
            } else {
                return None;
            }
        }
        Ty::Record(fields, _, _) => {
            for field in fields {
                transcode(r, field, out)?;
            }
        }
        Ty::Enum(symbols, _) => {
            let index = r.long()?;
            if index < 0 || index >= *symbols {
                return None;
            }
            write_long(out, index);
        }
        Ty::Fixed(size) => {
            out.extend_from_slice(r.buf.get(r.pos..r.pos + size)?);
            r.pos += size;
        }
        Ty::Blank(ty, blank) => {
            transcode(r, ty, &mut Vec::new())?;
            out.extend_from_slice(blank);
        }
    }
    Some(())
}

/// Avro's blocks of an array or map (a negative count carries the block's size in bytes): `item` once per
/// item; the number of items, None for bytes that are not blocks or an item that says None.
fn blocks<'a, E>(
    r: &mut Reader<'a>, mut item: impl FnMut(&mut Reader<'a>) -> Result<Option<()>, E>,
) -> Result<Option<usize>, E> {
    let mut total = 0usize;
    loop {
        let Some(mut count) = r.long() else { return Ok(None) };
        if count == 0 {
            return Ok(Some(total));
        }
        if count < 0 {
            let (Some(positive), Some(_size)) = (count.checked_neg(), r.long()) else { return Ok(None) };
            count = positive;
        }
        for _ in 0..count {
            if item(r)?.is_none() {
                return Ok(None);
            }
        }
        total += count as usize;
    }
}

fn write_block(out: &mut Vec<u8>, count: usize, items: &[u8]) {
    if count > 0 {
        write_long(out, count as i64);
        out.extend_from_slice(items);
    }
    write_long(out, 0);
}

/// Read one value of `ty` as the Python object fastavro makes of it. Ok(None) where fastavro would refuse the
/// bytes or where this code is unsure (a boolean byte other than 0 or 1): the caller then asks fastavro.
fn to_py(py: Python<'_>, r: &mut Reader, ty: &Ty) -> PyResult<Option<PyObject>> {
    macro_rules! or_none {
        ($e:expr) => {
            match $e {
                Some(v) => v,
                None => return Ok(None),
            }
        };
    }
    Ok(Some(match ty {
        Ty::Null => py.None(),
        Ty::Boolean => {
            let b = *or_none!(r.buf.get(r.pos));
            if b > 1 {
                return Ok(None);
            }
            r.pos += 1;
            (b == 1).into_pyobject(py)?.to_owned().into_any().unbind()
        }
        Ty::Int | Ty::Long => or_none!(r.long()).into_pyobject(py)?.into_any().unbind(),
        Ty::Timestamp(low, high, make, _) => {
            let t = or_none!(r.long());
            if t < *low || t > *high {
                return Ok(None);
            }
            make.call1(py, (t,))?
        }
        Ty::Float => {
            let raw: [u8; 4] = or_none!(r.buf.get(r.pos..r.pos + 4).and_then(|b| b.try_into().ok()));
            r.pos += 4;
            (f32::from_le_bytes(raw) as f64).into_pyobject(py)?.into_any().unbind()
        }
        Ty::Double => {
            let raw: [u8; 8] = or_none!(r.buf.get(r.pos..r.pos + 8).and_then(|b| b.try_into().ok()));
            r.pos += 8;
            f64::from_le_bytes(raw).into_pyobject(py)?.into_any().unbind()
        }
        Ty::Bytes => PyBytes::new(py, or_none!(r.bytes())).into_any().unbind(),
        Ty::Str => PyString::new(py, or_none!(r.string())).into_any().unbind(),
        Ty::Map(values) => {
            let dict = PyDict::new(py);
            or_none!(blocks(r, |r| {
                let Some(key) = r.string() else { return Ok(None) };
                let Some(value) = to_py(py, r, values)? else { return Ok(None) };
                dict.set_item(key, value).map(Some)
            })?);
            dict.into_any().unbind()
        }
        Ty::Array(item) => {
            let list = PyList::empty(py);
            or_none!(blocks(r, |r| match to_py(py, r, item)? {
                Some(value) => list.append(value).map(Some),
                None => Ok(None),
            })?);
            list.into_any().unbind()
        }
        Ty::Nullable(null_index, branch) => {
            let index = or_none!(r.long());
            if index == *null_index as i64 {
                py.None()
            } else if index == 1 - *null_index as i64 {
                or_none!(to_py(py, r, branch)?)
            } else {
                return Ok(None);
            }
        }
        Ty::Record(fields, names, _) => {
            let dict = PyDict::new(py);
            for (field, name) in fields.iter().zip(names) {
                dict.set_item(name.bind(py), or_none!(to_py(py, r, field)?))?;
            }
            dict.into_any().unbind()
        }
        Ty::Enum(count, symbols) => {
            let index = or_none!(r.long());
            if index < 0 || index >= *count {
                return Ok(None);
            }
            symbols[index as usize].clone_ref(py).into_any()
        }
        Ty::Fixed(size) => {
            let raw = or_none!(r.buf.get(r.pos..r.pos + size));
            r.pos += size;
            PyBytes::new(py, raw).into_any().unbind()
        }
        Ty::Blank(ty, _) => return to_py(py, r, ty),
    }))
}

/// One record type's decoder: the body of a value written with its local schema (after the single-object
/// header) as the dict fastavro makes of it, or None (then fastavro reads it, and refuses what it refuses).
#[pyclass(module = "mlbus_native")]
struct Decoder {
    plan: Ty,
}

#[pymethods]
impl Decoder {
    #[new]
    fn new(plan: Ty) -> Self {
        Decoder { plan }
    }

    fn __call__(&self, py: Python<'_>, body: &[u8]) -> PyResult<Option<PyObject>> {
        let mut r = Reader { buf: body, pos: 0 };
        let value = to_py(py, &mut r, &self.plan)?;
        Ok(value.filter(|_| r.pos == body.len()))
    }
}

/// Write `value` as fastavro's schemaless writer writes it, for the values it writes without judgement: None,
/// bool, int, float, str, bytes, dict, list, tuple, and what the plan's timestamp writer turns into a long.
/// Ok(None) for anything else (an int where a double goes, a missing field, a float too large for "float"…):
/// the caller then asks fastavro, which writes it or refuses it as before.
fn from_py(value: &Bound<'_, PyAny>, ty: &Ty, out: &mut Vec<u8>) -> PyResult<Option<()>> {
    macro_rules! or_none {
        ($e:expr) => {
            match $e {
                Some(v) => v,
                None => return Ok(None),
            }
        };
    }
    match ty {
        Ty::Null => {
            if !value.is_none() {
                return Ok(None);
            }
        }
        Ty::Boolean => out.push(or_none!(value.downcast_exact::<PyBool>().ok()).is_true() as u8),
        Ty::Int | Ty::Long => {
            if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
                return Ok(None);
            }
            let n: i64 = or_none!(value.extract().ok());
            if matches!(ty, Ty::Int) && i32::try_from(n).is_err() {
                return Ok(None);
            }
            write_long(out, n);
        }
        Ty::Float | Ty::Double => {
            let x = or_none!(value.downcast_exact::<PyFloat>().ok()).value();
            if matches!(ty, Ty::Double) {
                out.extend_from_slice(&x.to_le_bytes());
            } else {
                let narrow = x as f32;
                if narrow.is_infinite() && x.is_finite() {
                    return Ok(None); // struct.pack("<f") refuses it
                }
                out.extend_from_slice(&narrow.to_le_bytes());
            }
        }
        Ty::Bytes => write_bytes(out, or_none!(value.downcast_exact::<PyBytes>().ok()).as_bytes()),
        Ty::Str => write_bytes(out, or_none!(or_none!(value.downcast::<PyString>().ok()).to_str().ok()).as_bytes()),
        Ty::Timestamp(_, _, _, writer) => {
            let long = or_none!(writer.as_ref()).call1(value.py(), (value,))?;
            let long = long.bind(value.py());
            if long.is_none() {
                return Ok(None);
            }
            write_long(out, or_none!(long.extract::<i64>().ok()));
        }
        Ty::Map(values) => {
            let dict = or_none!(value.downcast::<PyDict>().ok());
            if !dict.is_empty() {
                write_long(out, dict.len() as i64);
                for (key, item) in dict.iter() {
                    let key = or_none!(key.downcast::<PyString>().ok());
                    write_bytes(out, or_none!(key.to_str().ok()).as_bytes());
                    or_none!(from_py(&item, values, out)?);
                }
            }
            write_long(out, 0);
        }
        Ty::Array(item) => {
            let items: Vec<Bound<'_, PyAny>> = if let Ok(list) = value.downcast::<PyList>() {
                list.iter().collect()
            } else {
                or_none!(value.downcast::<PyTuple>().ok()).iter().collect()
            };
            if !items.is_empty() {
                write_long(out, items.len() as i64);
                for element in &items {
                    or_none!(from_py(element, item, out)?);
                }
            }
            write_long(out, 0);
        }
        Ty::Nullable(null_index, branch) => {
            if value.is_none() {
                write_long(out, *null_index as i64);
            } else {
                write_long(out, 1 - *null_index as i64);
                or_none!(from_py(value, branch, out)?);
            }
        }
        Ty::Record(fields, names, defaults) => {
            let dict = or_none!(value.downcast::<PyDict>().ok());
            for ((field, name), default) in fields.iter().zip(names).zip(defaults) {
                let item = match dict.get_item(name.bind(value.py()))? {
                    Some(item) => item,
                    None => or_none!(default.as_ref()).bind(value.py()).clone(),   // as fastavro: the default
                };
                or_none!(from_py(&item, field, out)?);
            }
        }
        Ty::Enum(_, symbols) => {
            let text = or_none!(or_none!(value.downcast_exact::<PyString>().ok()).to_str().ok());
            let index =
                or_none!(symbols.iter().position(|s| s.bind(value.py()).to_str().is_ok_and(|symbol| symbol == text)));
            write_long(out, index as i64);
        }
        Ty::Fixed(size) => {
            let raw = or_none!(value.downcast_exact::<PyBytes>().ok()).as_bytes();
            if raw.len() != *size {
                return Ok(None);
            }
            out.extend_from_slice(raw);
        }
        Ty::Blank(..) => return Ok(None),
    }
    Ok(Some(()))
}

/// One record type's encoder: a dict as the body fastavro writes for it with its local schema, after `prefix`
/// (the single-object header), or None (then fastavro writes it, or refuses it, as before).
#[pyclass(module = "mlbus_native")]
struct Encoder {
    prefix: Vec<u8>,
    plan: Ty,
}

#[pymethods]
impl Encoder {
    #[new]
    fn new(prefix: Vec<u8>, plan: Ty) -> Self {
        Encoder { prefix, plan }
    }

    fn __call__<'py>(&self, value: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let mut out = self.prefix.clone();
        Ok(from_py(value, &self.plan, &mut out)?.map(|_| PyBytes::new(value.py(), &out)))
    }
}

/// One record type's redaction: values single-object encoded after `prefix` (its local schema's, the only
/// writer read here) come back with their personal fields blank; None for anything else.
#[pyclass(module = "mlbus_native")]
struct Redactor {
    prefix: Vec<u8>,
    plan: Ty,
}

#[pymethods]
impl Redactor {
    #[new]
    fn new(prefix: Vec<u8>, plan: Ty) -> Self {
        Redactor { prefix, plan }
    }

    fn __call__<'py>(&self, py: Python<'py>, value: &[u8]) -> Option<Bound<'py, PyBytes>> {
        let body = value.strip_prefix(self.prefix.as_slice())?;
        let mut r = Reader { buf: body, pos: 0 };
        let mut out = Vec::with_capacity(value.len());
        out.extend_from_slice(&self.prefix);
        transcode(&mut r, &self.plan, &mut out)?;
        (r.pos == body.len()).then(|| PyBytes::new(py, &out))
    }
}

// ---------------------------------------------------------------- canonical JSON (audit.py canonical_bytes)

/// A JSON string as Python's json.encoder.encode_basestring_ascii writes it: printable ASCII as is, the
/// usual short escapes, everything else \uXXXX in lowercase hex (surrogate pairs above the BMP).
fn put_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    // printable ASCII other than '"' and '\\' is itself: copied a run at a time (header names and values, topics,
    // hashes — nearly every string here), the rest character by character
    let plain = |b: &u8| (b' '..=b'~').contains(b) && *b != b'"' && *b != b'\\';
    let run = s.bytes().take_while(plain).count();
    out.extend_from_slice(&s.as_bytes()[..run]);
    for c in s[run..].chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            ' '..='~' => out.push(c as u8),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(b"\\u");
                    for shift in [12, 8, 4, 0] {
                        out.push(HEX[((*unit >> shift) & 0xf) as usize]);
                    }
                }
            }
        }
    }
    out.push(b'"');
}

fn put_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    // written in place, not pushed byte by byte (a capacity check each: the auditor's canonical bytes are mostly hex)
    let start = out.len();
    out.resize(start + bytes.len() * 2, 0);
    for (pair, b) in out[start..].chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[(b >> 4) as usize];
        pair[1] = HEX[(b & 0xf) as usize];
    }
}

fn put_quoted_hex(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.extend_from_slice(b"null"),
        Some(b) => {
            out.push(b'"');
            put_hex(out, b);
            out.push(b'"');
        }
    }
}

fn put_int(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(n.to_string().as_bytes());
}

fn canonical(rec: &Record) -> Vec<u8> {
    // room for it all at once (growing the vector copied the record once or twice): bytes as hex, two characters
    // each; header names, the subject and the fields' names and numbers beside them
    let hexed = rec.value.map_or(0, <[u8]>::len) + rec.key.map_or(0, <[u8]>::len)
        + rec.headers.iter().map(|(_, v)| v.map_or(0, <[u8]>::len)).sum::<usize>()
        + rec.sealed.as_ref().map_or(0, |s| s.ciphertext.len() + s.nonce.len());
    let text = rec.headers.iter().map(|(k, _)| 32 + k.len()).sum::<usize>()
        + rec.sealed.as_ref().map_or(0, |s| 64 + s.subject.len());
    let mut out = Vec::with_capacity(384 + 2 * hexed + text);
    out.extend_from_slice(b"{\"actor\":");
    put_string(&mut out, rec.actor);
    out.extend_from_slice(b",\"audited_at\":");
    put_int(&mut out, rec.audited_at);
    out.extend_from_slice(b",\"headers\":[");
    for (i, (name, value)) in rec.headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        put_string(&mut out, name);
        out.extend_from_slice(b",\"value\":");
        put_quoted_hex(&mut out, *value);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"key\":");
    put_quoted_hex(&mut out, rec.key);
    out.extend_from_slice(b",\"prev_hash\":");
    put_string(&mut out, rec.prev_hash);
    out.extend_from_slice(b",\"record_type\":");
    match rec.record_type {
        None => out.extend_from_slice(b"null"),
        Some(t) => put_string(&mut out, t),
    }
    if let Some(sealed) = &rec.sealed {
        out.extend_from_slice(b",\"sealed\":{\"ciphertext\":");
        put_quoted_hex(&mut out, Some(sealed.ciphertext));
        out.extend_from_slice(b",\"nonce\":");
        put_quoted_hex(&mut out, Some(sealed.nonce));
        out.extend_from_slice(b",\"subject\":");
        put_string(&mut out, sealed.subject);
        out.push(b'}');
    }
    out.extend_from_slice(b",\"sequence\":");
    put_int(&mut out, rec.sequence);
    out.extend_from_slice(b",\"source_offset\":");
    put_int(&mut out, rec.source_offset);
    out.extend_from_slice(b",\"source_partition\":");
    put_int(&mut out, rec.source_partition);
    out.extend_from_slice(b",\"source_timestamp\":");
    put_int(&mut out, rec.source_timestamp);
    out.extend_from_slice(b",\"source_topic\":");
    put_string(&mut out, rec.source_topic);
    out.extend_from_slice(b",\"value\":");
    put_quoted_hex(&mut out, rec.value);
    out.push(b'}');
    out
}

// ---------------------------------------------------------------- hashes (merkle.py)

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn leaf_hash(canonical: &[u8]) -> [u8; 32] {
    sha256(&[&[0u8], canonical])
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    sha256(&[&[1u8], left, right])
}

fn hex_string(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    put_hex(&mut out, bytes);
    String::from_utf8(out).expect("hex is ASCII")
}

fn from_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for i in 0..32 {
        out[i] = digit(s[2 * i])? << 4 | digit(s[2 * i + 1])?;
    }
    Some(out)
}

/// merkle.Frontier: the roots of the tree's perfect subtrees, largest first.
#[derive(Clone, Default)]
struct Frontier {
    size: u64,
    hashes: Vec<[u8; 32]>,
}

impl Frontier {
    fn append(&mut self, leaf: [u8; 32]) {
        self.hashes.push(leaf);
        let mut carried = self.size;
        while carried & 1 == 1 {
            let right = self.hashes.pop().expect("a carry has two subtrees");
            let left = self.hashes.last_mut().expect("a carry has two subtrees");
            *left = node_hash(left, &right);
            carried >>= 1;
        }
        self.size += 1;
    }

    fn root(&self) -> [u8; 32] {
        match self.hashes.split_last() {
            None => sha256(&[b""]),
            Some((last, rest)) => rest.iter().rev().fold(*last, |hashed, left| node_hash(left, &hashed)),
        }
    }
}

// ---------------------------------------------------------------- the walk over audit.log

/// What stopped a walk: the value at that index could not be read here ("unreadable": Python reads it), or
/// the record breaks the chain ("sequence" with the sequence found, "prev_hash", "hash").
type Stop = Option<(String, i64)>;

/// audit verify's state along the log: the chain's head and the Merkle frontier, both at the same record.
#[pyclass(module = "mlbus_native")]
struct ChainWalk {
    fingerprint: [u8; 8],
    sequence: i64,
    hash: [u8; 32],
    hash_hex: String,
    frontier: Frontier,
}

impl ChainWalk {
    fn walk(&mut self, values: &[&[u8]]) -> (usize, Stop) {
        for (added, raw) in values.iter().enumerate() {
            let record = if raw.len() >= HEADER_LEN && raw[..2] == MARKER && raw[2..HEADER_LEN] == self.fingerprint {
                read_record(&raw[HEADER_LEN..])
            } else {
                None
            };
            let Some(record) = record else {
                return (added, Some(("unreadable".into(), 0)));
            };
            if let Some(stop) = self.step(record.sequence, record.prev_hash, record.hash, &canonical(&record)) {
                return (added, Some(stop));
            }
        }
        (values.len(), None)
    }

    fn step(&mut self, sequence: i64, prev_hash: &str, hash: &str, canonical: &[u8]) -> Stop {
        let expected = self.sequence + 1;
        if sequence != expected {
            return Some(("sequence".into(), sequence));
        }
        if prev_hash != self.hash_hex {
            return Some(("prev_hash".into(), 0));
        }
        let computed = hex_string(&sha256(&[&self.hash, canonical]));
        if computed != hash {
            return Some(("hash".into(), 0));
        }
        self.frontier.append(leaf_hash(canonical));
        self.sequence = expected;
        self.hash = from_hex(&computed).expect("a digest in hex");
        self.hash_hex = computed;
        None
    }
}

#[pymethods]
impl ChainWalk {
    /// A walk from the start of the log, reading values written with the AuditRecord schema of this
    /// fingerprint (8 bytes, as on the wire).
    #[new]
    fn new(fingerprint: &[u8]) -> PyResult<Self> {
        let fingerprint = fingerprint.try_into().map_err(|_| PyValueError::new_err("a fingerprint is 8 bytes"))?;
        Ok(ChainWalk { fingerprint, sequence: 0, hash: GENESIS, hash_hex: hex_string(&GENESIS), frontier: Frontier::default() })
    }

    /// Walk `values[start:end]` (audit.log's raw values, in order) until `end` or the first stop: (how many
    /// records were added, the stop or None). The interpreter is free meanwhile (the GIL released), so a
    /// reader thread can fetch the next batch.
    fn feed(&mut self, py: Python<'_>, values: &Bound<'_, PyList>, start: usize, end: usize) -> (usize, Stop) {
        let items: Vec<Bound<'_, PyAny>> = values.iter().skip(start).take(end.saturating_sub(start)).collect();
        let raw: Vec<&[u8]> =
            items.iter().map(|item| item.downcast::<PyBytes>().map(|b| b.as_bytes()).unwrap_or(b"")).collect();
        py.allow_threads(|| self.walk(&raw))
    }

    /// One record read elsewhere, given by its chain fields and canonical bytes.
    fn feed_canonical(&mut self, sequence: i64, prev_hash: &str, hash: &str, canonical: &[u8]) -> Stop {
        self.step(sequence, prev_hash, hash, canonical)
    }

    #[getter]
    fn sequence(&self) -> i64 {
        self.sequence
    }

    #[getter]
    fn hash(&self) -> &str {
        &self.hash_hex
    }

    fn root<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.frontier.root())
    }
}

type Header = (PyBackedStr, Option<PyBackedBytes>);
type SealedArg = (PyBackedStr, PyBackedBytes, PyBackedBytes);

/// The auditor's seal of one record: (its AuditRecord single-object encoded after `prefix` — C3 01 and the
/// schema's fingerprint —, its chain hash in hex, its Merkle leaf hash), from one canonical encoding: what
/// audit.py's sealed_leaf and the codec compute in Python, byte for byte.
#[pyfunction]
#[pyo3(signature = (prefix, sequence, audited_at, source_topic, source_partition, source_offset, source_timestamp,
                    key, headers, value, actor, record_type, sealed, prev_hash))]
#[allow(clippy::too_many_arguments)]
fn seal<'py>(
    py: Python<'py>, prefix: &[u8], sequence: i64, audited_at: i64, source_topic: &str, source_partition: i32,
    source_offset: i64, source_timestamp: i64, key: Option<PyBackedBytes>, headers: Vec<Header>,
    value: Option<PyBackedBytes>, actor: &str, record_type: Option<PyBackedStr>, sealed: Option<SealedArg>,
    prev_hash: &str,
) -> PyResult<(Bound<'py, PyBytes>, String, Bound<'py, PyBytes>)> {
    let prev = from_hex(prev_hash).ok_or_else(|| PyValueError::new_err("prev_hash is not a SHA-256 in hex"))?;
    let mut hash = String::new();
    let mut rec = Record {
        sequence, audited_at, source_topic, source_partition: source_partition as i64, source_offset,
        source_timestamp, key: key.as_deref(),
        headers: headers.iter().map(|(k, v)| (&**k, v.as_deref())).collect(),
        value: value.as_deref(), actor, record_type: record_type.as_deref(),
        sealed: sealed.as_ref().map(|(subject, nonce, ciphertext)| Sealed { subject, nonce, ciphertext }),
        prev_hash, hash: "",
    };
    let mut out = Vec::new();
    let (_, leaf) = seal_record(&mut rec, &prev, &mut hash, prefix, &mut out);
    Ok((PyBytes::new(py, &out), hash, PyBytes::new(py, &leaf)))
}

/// One record sealed after `prev`: its canonical bytes chained (the hash in hex into `hash_hex`, and from there
/// into the record), the record written to `out` after `prefix`; returns its chain hash and Merkle leaf hash.
/// `seal` and the pager's runs both seal through here, as audit.py's sealed_leaf does in Python.
fn seal_record<'a>(rec: &mut Record<'a>, prev: &[u8], hash_hex: &'a mut String, prefix: &[u8], out: &mut Vec<u8>)
                   -> ([u8; 32], [u8; 32]) {
    let canonical = canonical(rec);
    let hash = sha256(&[prev, &canonical]);
    *hash_hex = hex_string(&hash);
    let hex: &'a String = hash_hex;
    rec.hash = hex;
    out.clear();
    out.reserve(prefix.len() + canonical.len() + 64);
    out.extend_from_slice(prefix);
    write_record(out, rec);
    (hash, leaf_hash(&canonical))
}

/// The canonical bytes of one AuditRecord value (single-object encoded with this fingerprint), None when it
/// cannot be read here: for tests holding this path equal to the Python one.
#[pyfunction]
fn canonical_of<'py>(py: Python<'py>, value: &[u8], fingerprint: &[u8]) -> Option<Bound<'py, PyBytes>> {
    if value.len() < HEADER_LEN || value[..2] != MARKER || &value[2..HEADER_LEN] != fingerprint {
        return None;
    }
    read_record(&value[HEADER_LEN..]).map(|record| PyBytes::new(py, &canonical(&record)))
}

// ---------------------------------------------------------------- tree ensembles (services/domain/forest.py)

/// One decision tree as scikit-learn stores it: children (-1 for a leaf), split feature and threshold per node,
/// and each node's class probabilities (row-major, n_classes per node).
struct Tree {
    left: Vec<i64>,
    right: Vec<i64>,
    feature: Vec<usize>,
    threshold: Vec<f64>,
    value: Vec<f64>,
}

/// A random forest's predict_proba: each row walked down every tree as scikit-learn walks it (the feature as
/// float32, widened to compare: `x <= threshold` goes left), the leaves' probabilities summed tree after tree
/// from 0.0 and divided by the number of trees — the same operations in the same order, so the same bits.
#[pyclass(frozen)]
struct Forest {
    n_features: usize,
    n_classes: usize,
    trees: Vec<Tree>,
}

#[pymethods]
impl Forest {
    /// trees: (children_left, children_right, feature, threshold, probabilities) per tree, in the forest's order.
    /// Refused (ValueError) unless every child comes after its parent and is in range, every split feature is
    /// below n_features and every node has n_classes probabilities: a walk always ends.
    #[new]
    fn new(n_features: usize, n_classes: usize, trees: Vec<(Vec<i64>, Vec<i64>, Vec<i64>, Vec<f64>, Vec<f64>)>)
        -> PyResult<Self> {
        let refuse = |why: &str| PyValueError::new_err(format!("not a forest mlbus can walk: {why}"));
        if n_classes == 0 || trees.is_empty() {
            return Err(refuse("no classes or no trees"));
        }
        let mut walked = Vec::with_capacity(trees.len());
        for (left, right, feature, threshold, value) in trees {
            let nodes = left.len();
            if nodes == 0 || right.len() != nodes || feature.len() != nodes || threshold.len() != nodes
                || value.len() != nodes * n_classes {
                return Err(refuse("arrays of different lengths"));
            }
            let mut features = Vec::with_capacity(nodes);
            for node in 0..nodes {
                let (l, r) = (left[node], right[node]);
                if l == -1 {
                    features.push(0);
                    continue;
                }
                let in_order = |child: i64| child > node as i64 && (child as usize) < nodes;
                if !in_order(l) || !in_order(r) || feature[node] < 0 || feature[node] as usize >= n_features {
                    return Err(refuse("a child out of order or a feature out of range"));
                }
                features.push(feature[node] as usize);
            }
            walked.push(Tree { left, right, feature: features, threshold, value });
        }
        Ok(Forest { n_features, n_classes, trees: walked })
    }

    /// rows: float32 values, row-major, n_features per row (numpy's tobytes()); the probabilities as float64
    /// bytes (n_classes per row), or None when a value is not finite (scikit-learn decides about those).
    fn predict_proba<'py>(&self, py: Python<'py>, rows: &[u8]) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let width = self.n_features * 4;
        if width == 0 || rows.len() % width != 0 {
            return Err(PyValueError::new_err("rows are not whole rows of float32 features"));
        }
        let values: Vec<f32> = rows.chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect();
        if !values.iter().all(|v| v.is_finite()) {
            return Ok(None);
        }
        let probabilities = py.allow_threads(|| self.walk(&values));
        let bytes: Vec<u8> = probabilities.iter().flat_map(|p| p.to_ne_bytes()).collect();
        Ok(Some(PyBytes::new(py, &bytes)))
    }
}

impl Forest {
    fn walk(&self, values: &[f32]) -> Vec<f64> {
        let (k, rows) = (self.n_classes, values.len() / self.n_features);
        let mut out = vec![0.0f64; rows * k];
        for tree in &self.trees {
            for (row, x) in values.chunks_exact(self.n_features).enumerate() {
                let mut node = 0usize;
                while tree.left[node] != -1 {
                    node = if (x[tree.feature[node]] as f64) <= tree.threshold[node] {
                        tree.left[node] as usize
                    } else {
                        tree.right[node] as usize
                    };
                }
                for (sum, p) in out[row * k..(row + 1) * k].iter_mut().zip(&tree.value[node * k..(node + 1) * k]) {
                    *sum += p;
                }
            }
        }
        let trees = self.trees.len() as f64;
        for p in out.iter_mut() {
            *p /= trees;
        }
        out
    }
}

#[pymodule]
fn mlbus_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ChainWalk>()?;
    m.add_class::<Redactor>()?;
    m.add_class::<Decoder>()?;
    m.add_class::<Encoder>()?;
    m.add_class::<Forest>()?;
    m.add_class::<pager::PyFrontier>()?;
    m.add_class::<pager::Pager>()?;
    m.add_class::<consumer::Consumer>()?;
    m.add_class::<consumer::ConsumedMessage>()?;
    m.add_function(wrap_pyfunction!(pager::page_records, m)?)?;
    m.add_function(wrap_pyfunction!(pager::record_topic, m)?)?;
    m.add_function(wrap_pyfunction!(canonical_of, m)?)?;
    m.add_function(wrap_pyfunction!(seal, m)?)?;
    Ok(())
}
