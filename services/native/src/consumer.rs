//! A Kafka consumer whose messages stay compiled: librdkafka's C API, from the very library confluent-kafka
//! loaded (its path handed in by services/bus/native_consumer.py, opened with dlopen), read a batch at a time with
//! the GIL released. Each message becomes a `ConsumedMessage` holding its fields as Rust values; Python reads them
//! through the methods confluent-kafka's Message has (topic(), value(), headers(), ...), made into Python objects
//! only when asked, and the auditor's pager reads them without Python at all. Under the auditor's load the
//! client's Message objects (their headers as lists of tuples above all) were most of its per-event cost.
//!
//! Only what a transactional, assigned (not subscribed) consumer needs: assign, consume, assignment, position,
//! cached watermarks, seek, pause/resume, the group metadata for send_offsets_to_transaction, statistics, close.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

const RD_KAFKA_CONSUMER: c_int = 1;
const CONF_OK: c_int = 0;
const MAX_MESSAGES: usize = 1_000_000; // the client's bound on consume(num_messages)
const ERR_NOENT: c_int = -156; // RD_KAFKA_RESP_ERR__NOENT: a message without headers

#[repr(C)]
struct RdMessage {
    err: c_int,
    rkt: *mut c_void,
    partition: i32,
    payload: *const u8,
    len: usize,
    key: *const u8,
    key_len: usize,
    offset: i64,
    _private: *mut c_void,
}

#[repr(C)]
struct RdPartition {
    topic: *const c_char,
    partition: i32,
    offset: i64,
    metadata: *mut c_void,
    metadata_size: usize,
    opaque: *mut c_void,
    err: c_int,
    _private: *mut c_void,
}

#[repr(C)]
struct RdList {
    cnt: c_int,
    size: c_int,
    elems: *mut RdPartition,
}

type Stats = unsafe extern "C" fn(*mut c_void, *mut c_char, usize, *mut c_void) -> c_int;

/// The C functions used, looked up once in the library confluent-kafka loaded.
struct Api {
    conf_new: unsafe extern "C" fn() -> *mut c_void,
    conf_set: unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, *mut c_char, usize) -> c_int,
    conf_set_stats_cb: unsafe extern "C" fn(*mut c_void, Stats),
    conf_set_opaque: unsafe extern "C" fn(*mut c_void, *mut c_void),
    conf_destroy: unsafe extern "C" fn(*mut c_void),
    new: unsafe extern "C" fn(c_int, *mut c_void, *mut c_char, usize) -> *mut c_void,
    destroy: unsafe extern "C" fn(*mut c_void),
    poll_set_consumer: unsafe extern "C" fn(*mut c_void) -> c_int,
    queue_get_consumer: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    queue_destroy: unsafe extern "C" fn(*mut c_void),
    consume_batch_queue: unsafe extern "C" fn(*mut c_void, c_int, *mut *mut RdMessage, usize) -> isize,
    message_destroy: unsafe extern "C" fn(*mut RdMessage),
    message_timestamp: unsafe extern "C" fn(*const RdMessage, *mut c_int) -> i64,
    message_headers: unsafe extern "C" fn(*const RdMessage, *mut *mut c_void) -> c_int,
    header_get_all: unsafe extern "C" fn(*const c_void, usize, *mut *const c_char, *mut *const u8, *mut usize) -> c_int,
    topic_name: unsafe extern "C" fn(*mut c_void) -> *const c_char,
    err2str: unsafe extern "C" fn(c_int) -> *const c_char,
    list_new: unsafe extern "C" fn(c_int) -> *mut RdList,
    list_add: unsafe extern "C" fn(*mut RdList, *const c_char, i32) -> *mut RdPartition,
    list_destroy: unsafe extern "C" fn(*mut RdList),
    assign: unsafe extern "C" fn(*mut c_void, *const RdList) -> c_int,
    assignment: unsafe extern "C" fn(*mut c_void, *mut *mut RdList) -> c_int,
    position: unsafe extern "C" fn(*mut c_void, *mut RdList) -> c_int,
    get_watermark_offsets: unsafe extern "C" fn(*mut c_void, *const c_char, i32, *mut i64, *mut i64) -> c_int,
    seek_partitions: unsafe extern "C" fn(*mut c_void, *mut RdList, c_int) -> *mut c_void,
    pause_partitions: unsafe extern "C" fn(*mut c_void, *mut RdList) -> c_int,
    resume_partitions: unsafe extern "C" fn(*mut c_void, *mut RdList) -> c_int,
    error_code: unsafe extern "C" fn(*const c_void) -> c_int,
    error_string: unsafe extern "C" fn(*const c_void) -> *const c_char,
    error_destroy: unsafe extern "C" fn(*mut c_void),
    group_metadata: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    group_metadata_write: unsafe extern "C" fn(*const c_void, *mut *mut c_void, *mut usize) -> *mut c_void,
    group_metadata_destroy: unsafe extern "C" fn(*mut c_void),
    mem_free: unsafe extern "C" fn(*mut c_void, *mut c_void),
    consumer_close: unsafe extern "C" fn(*mut c_void) -> c_int,
}

impl Api {
    #[allow(clippy::missing_transmute_annotations)] // each field's type is the C signature the symbol is read as
    fn open(path: &str) -> PyResult<Api> {
        let name = CString::new(path).map_err(|_| PyValueError::new_err("a library path holds a NUL"))?;
        // SAFETY: dlopen of the library confluent-kafka already loaded (RTLD_NOLOAD: that one or none, never a
        // second copy): the same handle, its initialisers ran.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL | libc::RTLD_NOLOAD) };
        if handle.is_null() {
            return Err(PyRuntimeError::new_err(format!("no librdkafka at {path} is loaded in this process")));
        }
        macro_rules! symbol {
            ($name:literal) => {{
                let symbol = CString::new($name).unwrap();
                // SAFETY: the symbol is librdkafka's function of that name, whose C signature the field declares.
                let found = unsafe { libc::dlsym(handle, symbol.as_ptr()) };
                if found.is_null() {
                    return Err(PyRuntimeError::new_err(format!("librdkafka at {path} has no {}", $name)));
                }
                unsafe { std::mem::transmute::<*mut c_void, _>(found) }
            }};
        }
        Ok(Api {
            conf_new: symbol!("rd_kafka_conf_new"),
            conf_set: symbol!("rd_kafka_conf_set"),
            conf_set_stats_cb: symbol!("rd_kafka_conf_set_stats_cb"),
            conf_set_opaque: symbol!("rd_kafka_conf_set_opaque"),
            conf_destroy: symbol!("rd_kafka_conf_destroy"),
            new: symbol!("rd_kafka_new"),
            destroy: symbol!("rd_kafka_destroy"),
            poll_set_consumer: symbol!("rd_kafka_poll_set_consumer"),
            queue_get_consumer: symbol!("rd_kafka_queue_get_consumer"),
            queue_destroy: symbol!("rd_kafka_queue_destroy"),
            consume_batch_queue: symbol!("rd_kafka_consume_batch_queue"),
            message_destroy: symbol!("rd_kafka_message_destroy"),
            message_timestamp: symbol!("rd_kafka_message_timestamp"),
            message_headers: symbol!("rd_kafka_message_headers"),
            header_get_all: symbol!("rd_kafka_header_get_all"),
            topic_name: symbol!("rd_kafka_topic_name"),
            err2str: symbol!("rd_kafka_err2str"),
            list_new: symbol!("rd_kafka_topic_partition_list_new"),
            list_add: symbol!("rd_kafka_topic_partition_list_add"),
            list_destroy: symbol!("rd_kafka_topic_partition_list_destroy"),
            assign: symbol!("rd_kafka_assign"),
            assignment: symbol!("rd_kafka_assignment"),
            position: symbol!("rd_kafka_position"),
            get_watermark_offsets: symbol!("rd_kafka_get_watermark_offsets"),
            seek_partitions: symbol!("rd_kafka_seek_partitions"),
            pause_partitions: symbol!("rd_kafka_pause_partitions"),
            resume_partitions: symbol!("rd_kafka_resume_partitions"),
            error_code: symbol!("rd_kafka_error_code"),
            error_string: symbol!("rd_kafka_error_string"),
            error_destroy: symbol!("rd_kafka_error_destroy"),
            group_metadata: symbol!("rd_kafka_consumer_group_metadata"),
            group_metadata_write: symbol!("rd_kafka_consumer_group_metadata_write"),
            group_metadata_destroy: symbol!("rd_kafka_consumer_group_metadata_destroy"),
            mem_free: symbol!("rd_kafka_mem_free"),
            consumer_close: symbol!("rd_kafka_consumer_close"),
        })
    }

    fn error_text(&self, code: c_int) -> String {
        // SAFETY: err2str returns a static string for any code.
        unsafe { CStr::from_ptr((self.err2str)(code)) }.to_string_lossy().into_owned()
    }
}

/// A consumed message's fields (shared with the pager): `headers` None when a header name is not UTF-8 (read as
/// the client does: its headers cannot be read).
pub(crate) struct Fields {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i64,
    pub(crate) offset: i64,
    pub(crate) timestamp: (i32, i64),
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) headers: Option<Vec<(String, Option<Vec<u8>>)>>,
}

impl Fields {
    /// Its headers (none when they could not be read: such a message never reaches the pager's sealing).
    pub(crate) fn pairs(&self) -> &[(String, Option<Vec<u8>>)] {
        self.headers.as_deref().unwrap_or_default()
    }
}

impl ConsumedMessage {
    /// The topic it was read from (None for an error event without one).
    pub(crate) fn topic_name(&self) -> Option<&str> {
        self.topic.is_some().then_some(&*self.fields.topic)
    }
}

/// A message as the native consumer returns it: confluent-kafka's Message methods over compiled fields.
#[pyclass(module = "mlbus_native", frozen)]
pub(crate) struct ConsumedMessage {
    pub(crate) fields: Arc<Fields>,
    topic: Option<Py<PyString>>,
    error: Option<(i32, String)>,
}

#[pymethods]
impl ConsumedMessage {
    /// A message made by hand (the tests'): topic, partition, offset, (timestamp type, ms), key, value, headers
    /// (a name given as bytes that are not UTF-8 makes its headers unreadable, as the client finds them).
    #[new]
    #[pyo3(signature = (topic, partition, offset, timestamp, key, value, headers))]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)] // the message's accessors, in their order
    fn new(py: Python<'_>, topic: String, partition: i64, offset: i64, timestamp: (i32, i64), key: Option<Vec<u8>>,
           value: Option<Vec<u8>>, headers: Option<Vec<(Bound<'_, PyAny>, Option<Vec<u8>>)>>) -> PyResult<Self> {
        let mut pairs = Some(Vec::new());
        for (name, value) in headers.unwrap_or_default() {
            let name = match name.extract::<String>() {
                Ok(text) => Some(text),
                Err(_) => String::from_utf8(name.extract::<Vec<u8>>()?).ok(),
            };
            match (name, pairs.as_mut()) {
                (Some(name), Some(list)) => list.push((name, value)),
                _ => pairs = None,
            }
        }
        Ok(ConsumedMessage {
            topic: Some(PyString::new(py, &topic).unbind()),
            fields: Arc::new(Fields { topic: Arc::from(topic), partition, offset, timestamp, key, value, headers: pairs }),
            error: None,
        })
    }

    fn topic(&self, py: Python<'_>) -> Option<Py<PyString>> {
        self.topic.as_ref().map(|t| t.clone_ref(py))
    }

    fn partition(&self) -> Option<i64> {
        (self.error.is_none() || self.fields.partition >= 0).then_some(self.fields.partition)
    }

    fn offset(&self) -> Option<i64> {
        (self.error.is_none() || self.fields.offset >= 0).then_some(self.fields.offset)
    }

    fn timestamp(&self) -> (i32, i64) {
        self.fields.timestamp
    }

    fn key<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.fields.key.as_deref().map(|k| PyBytes::new(py, k))
    }

    fn value<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.fields.value.as_deref().map(|v| PyBytes::new(py, v))
    }

    /// (name, value) pairs as the client gives them; None without headers; an error when a name is not UTF-8 (the
    /// client raises too: consumed.headers_of remembers such a message).
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let Some(headers) = &self.fields.headers else {
            return Err(PyValueError::new_err("a header name is not UTF-8"));
        };
        if headers.is_empty() {
            return Ok(None);
        }
        let pairs = headers.iter().map(|(k, v)| {
            PyTuple::new(py, [PyString::new(py, k).into_any(), match v {
                Some(v) => PyBytes::new(py, v).into_any(),
                None => py.None().into_bound(py),
            }])
        });
        Ok(Some(PyList::new(py, pairs.collect::<PyResult<Vec<_>>>()?)?))
    }

    /// confluent_kafka's KafkaError for an error event, else None.
    fn error(&self, py: Python<'_>) -> PyResult<Option<PyObject>> {
        let Some((code, text)) = &self.error else { return Ok(None) };
        let kafka_error = py.import("confluent_kafka")?.getattr("KafkaError")?;
        let fatal = *code == -150; // RD_KAFKA_RESP_ERR__FATAL
        Ok(Some(kafka_error.call1((*code, text.as_str(), fatal))?.unbind()))
    }

    fn __len__(&self) -> usize {
        self.fields.value.as_ref().map_or(0, Vec::len)
    }
}

/// The librdkafka handle, its consumer queue and the latest statistics (the stats callback's opaque).
struct Handle {
    rk: *mut c_void,
    queue: *mut c_void,
    statistics: *mut Mutex<Option<String>>,
}

// SAFETY: librdkafka's handles are thread-safe; the statistics mutex is only reached through its lock.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

unsafe extern "C" fn on_statistics(_rk: *mut c_void, json: *mut c_char, len: usize, opaque: *mut c_void) -> c_int {
    if json.is_null() || opaque.is_null() {
        return 0;
    }
    let kept = &*(opaque as *const Mutex<Option<String>>);
    let text = String::from_utf8_lossy(std::slice::from_raw_parts(json as *const u8, len)).into_owned();
    if let Ok(mut latest) = kept.lock() {
        *latest = Some(text);
    }
    0 // librdkafka frees the JSON
}

#[pyclass(module = "mlbus_native")]
pub(crate) struct Consumer {
    api: Api,
    handle: Option<Handle>,
    names: HashMap<Arc<str>, Py<PyString>>, // each topic's name, made once
}

// SAFETY: the Api holds plain function pointers.
unsafe impl Send for Api {}
unsafe impl Sync for Api {}

type Partitions = Vec<(String, i32, i64)>;
/// A message read without the GIL: its fields, its error (code, text) if it is an error event, whether its topic's
/// name is new to this consumer.
type Read = (Fields, Option<(i32, String)>, bool);

impl Consumer {
    fn handle(&self) -> PyResult<&Handle> {
        self.handle.as_ref().ok_or_else(|| PyRuntimeError::new_err("the consumer is closed"))
    }

    fn list(&self, partitions: &[(String, i32, i64)]) -> PyResult<*mut RdList> {
        // SAFETY: a new list, filled with copies of the names (librdkafka copies them).
        unsafe {
            let list = (self.api.list_new)(partitions.len() as c_int);
            for (topic, partition, offset) in partitions {
                let Ok(name) = CString::new(topic.as_str()) else {
                    (self.api.list_destroy)(list);
                    return Err(PyValueError::new_err("a topic holds a NUL"));
                };
                let added = (self.api.list_add)(list, name.as_ptr(), *partition);
                (*added).offset = *offset;
            }
            Ok(list)
        }
    }

    fn read_list(list: *const RdList) -> Partitions {
        // SAFETY: a list librdkafka filled: cnt elements, each with a NUL-terminated topic.
        unsafe {
            (0..(*list).cnt as usize)
                .map(|i| {
                    let p = &*(*list).elems.add(i);
                    (CStr::from_ptr(p.topic).to_string_lossy().into_owned(), p.partition, p.offset)
                })
                .collect()
        }
    }

    fn check(&self, code: c_int, doing: &str) -> PyResult<()> {
        if code == 0 {
            return Ok(());
        }
        Err(kafka_exception(code, &format!("{doing}: {}", self.api.error_text(code))))
    }

    fn with_list(&self, partitions: Partitions, doing: &str, call: unsafe extern "C" fn(*mut c_void, *mut RdList) -> c_int)
        -> PyResult<()> {
        let rk = self.handle()?.rk;
        let list = self.list(&partitions)?;
        // SAFETY: the handle is open; the list is ours and destroyed after the call.
        let code = unsafe { call(rk, list) };
        unsafe { (self.api.list_destroy)(list) };
        self.check(code, doing)
    }

}

fn kafka_exception(code: c_int, text: &str) -> PyErr {
    Python::with_gil(|py| {
        let made = py.import("confluent_kafka").and_then(|kafka| {
            let error = kafka.getattr("KafkaError")?.call1((code, text))?;
            Ok(PyErr::from_value(kafka.getattr("KafkaException")?.call1((error,))?))
        });
        made.unwrap_or_else(|e| e)
    })
}

/// One consumed message's fields, copied out of librdkafka's message (which is destroyed right after).
fn fields_of(api: &Api, m: *mut RdMessage, topic: Arc<str>) -> Fields {
    // SAFETY: a message consume_batch_queue returned and not yet destroyed.
    unsafe {
        let r = &*m;
        let bytes = |ptr: *const u8, len: usize| (!ptr.is_null()).then(|| std::slice::from_raw_parts(ptr, len).to_vec());
        let mut kind: c_int = 0;
        let at = (api.message_timestamp)(m, &mut kind);
        let mut headers: Option<Vec<(String, Option<Vec<u8>>)>> = Some(Vec::new());
        let mut hdrs: *mut c_void = std::ptr::null_mut();
        if r.err == 0 && (api.message_headers)(m, &mut hdrs) != ERR_NOENT && !hdrs.is_null() {
            let mut index = 0;
            let (mut name, mut value, mut size): (*const c_char, *const u8, usize) = (std::ptr::null(), std::ptr::null(), 0);
            while (api.header_get_all)(hdrs, index, &mut name, &mut value, &mut size) == 0 {
                match (CStr::from_ptr(name).to_str(), headers.as_mut()) {
                    (Ok(text), Some(list)) => list.push((text.to_string(), bytes(value, size))),
                    _ => headers = None,
                }
                index += 1;
            }
        }
        Fields {
            topic,
            partition: r.partition as i64,
            offset: r.offset,
            timestamp: (kind, at),
            key: bytes(r.key, r.key_len),
            value: if r.err == 0 { bytes(r.payload, r.len) } else { None },
            headers,
        }
    }
}

#[pymethods]
impl Consumer {
    /// `library`: the path of the librdkafka confluent-kafka loaded; `config`: librdkafka's settings as text.
    #[new]
    fn new(library: &str, config: Vec<(String, String)>) -> PyResult<Self> {
        let api = Api::open(library)?;
        let statistics = Box::into_raw(Box::new(Mutex::new(None::<String>)));
        let mut errstr = vec![0 as c_char; 512];
        // SAFETY: a new configuration handed to rd_kafka_new (which owns it on success, else destroyed here).
        unsafe {
            let conf = (api.conf_new)();
            for (name, value) in &config {
                let (n, v) = (CString::new(name.as_str()), CString::new(value.as_str()));
                let (Ok(n), Ok(v)) = (n, v) else {
                    (api.conf_destroy)(conf);
                    drop(Box::from_raw(statistics));
                    return Err(PyValueError::new_err(format!("setting {name} holds a NUL")));
                };
                if (api.conf_set)(conf, n.as_ptr(), v.as_ptr(), errstr.as_mut_ptr(), errstr.len()) != CONF_OK {
                    (api.conf_destroy)(conf);
                    drop(Box::from_raw(statistics));
                    let why = CStr::from_ptr(errstr.as_ptr()).to_string_lossy().into_owned();
                    return Err(PyValueError::new_err(format!("librdkafka refused {name}: {why}")));
                }
            }
            (api.conf_set_stats_cb)(conf, on_statistics);
            (api.conf_set_opaque)(conf, statistics as *mut c_void);
            let rk = (api.new)(RD_KAFKA_CONSUMER, conf, errstr.as_mut_ptr(), errstr.len());
            if rk.is_null() {
                (api.conf_destroy)(conf);
                drop(Box::from_raw(statistics));
                let why = CStr::from_ptr(errstr.as_ptr()).to_string_lossy().into_owned();
                return Err(PyRuntimeError::new_err(format!("librdkafka made no consumer: {why}")));
            }
            (api.poll_set_consumer)(rk);
            let queue = (api.queue_get_consumer)(rk);
            if queue.is_null() {
                // no group: librdkafka has no consumer queue to read (the client refuses the same)
                (api.destroy)(rk);
                drop(Box::from_raw(statistics));
                return Err(PyValueError::new_err("Failed to create consumer: group.id must be set"));
            }
            Ok(Consumer { api, handle: Some(Handle { rk, queue, statistics }), names: HashMap::new() })
        }
    }

    /// Up to `count` messages (and error events), waiting at most `timeout` seconds for the first. The messages
    /// are read and copied without the GIL; only the objects Python holds are made with it.
    fn consume<'py>(&mut self, py: Python<'py>, count: usize, timeout: f64) -> PyResult<Bound<'py, PyList>> {
        if count > MAX_MESSAGES {
            // room for `count` messages is made first: refused, as the client refuses it, rather than an abort
            return Err(PyValueError::new_err(format!("num_messages must be between 0 and {MAX_MESSAGES}")));
        }
        if count == 0 {
            return Ok(PyList::empty(py));
        }
        let queue = self.handle()?.queue as usize;
        let (api, names) = (&self.api, &self.names);
        let timeout_ms = (timeout * 1000.0).max(0.0) as c_int;
        let read: Vec<Read> = py.allow_threads(|| {
            let mut raw: Vec<*mut RdMessage> = vec![std::ptr::null_mut(); count];
            // SAFETY: the queue is open; librdkafka fills at most `count` pointers, each destroyed once copied.
            let n = unsafe { (api.consume_batch_queue)(queue as *mut c_void, timeout_ms, raw.as_mut_ptr(), raw.len()) };
            raw.truncate(n.max(0) as usize);
            raw.into_iter().map(|m| unsafe {
                let topic = if (*m).rkt.is_null() { None } else { CStr::from_ptr((api.topic_name)((*m).rkt)).to_str().ok() };
                let known = topic.and_then(|t| names.get_key_value(t).map(|(k, _)| k.clone()));
                let fresh = topic.is_some() && known.is_none();
                let topic = known.unwrap_or_else(|| Arc::from(topic.unwrap_or_default()));
                let error = ((*m).err != 0).then(|| (*m).err);
                let error = error.map(|err| {
                    let (payload, len) = ((*m).payload, (*m).len);
                    let detail = if payload.is_null() { String::new() } else {
                        String::from_utf8_lossy(std::slice::from_raw_parts(payload, len)).into_owned()
                    };
                    (err, if detail.is_empty() { api.error_text(err) } else { detail })
                });
                let fields = fields_of(api, m, topic);
                (api.message_destroy)(m);
                (fields, error, fresh)
            }).collect()
        });
        let mut made = Vec::with_capacity(read.len());
        for (fields, error, fresh) in read {
            if fresh && !self.names.contains_key(&fields.topic) {
                self.names.insert(fields.topic.clone(), PyString::new(py, &fields.topic).unbind());
            }
            let topic = (!fields.topic.is_empty()).then(|| self.names[&fields.topic].clone_ref(py));
            made.push(Py::new(py, ConsumedMessage { fields: Arc::new(fields), topic, error })?);
        }
        PyList::new(py, made)
    }

    fn assign(&self, partitions: Partitions) -> PyResult<()> {
        let rk = self.handle()?.rk;
        let list = self.list(&partitions)?;
        // SAFETY: as with_list.
        let code = unsafe { (self.api.assign)(rk, list) };
        unsafe { (self.api.list_destroy)(list) };
        self.check(code, "assign")
    }

    fn assignment(&self) -> PyResult<Partitions> {
        let rk = self.handle()?.rk;
        let mut list: *mut RdList = std::ptr::null_mut();
        // SAFETY: librdkafka makes the list; destroyed once read.
        let code = unsafe { (self.api.assignment)(rk, &mut list) };
        self.check(code, "assignment")?;
        let read = Consumer::read_list(list);
        unsafe { (self.api.list_destroy)(list) };
        Ok(read)
    }

    /// The position (next offset to read) of each partition; -1001 where none is known yet.
    fn position(&self, partitions: Partitions) -> PyResult<Partitions> {
        let rk = self.handle()?.rk;
        let list = self.list(&partitions)?;
        // SAFETY: as with_list; the list is read before it is destroyed.
        let code = unsafe { (self.api.position)(rk, list) };
        let read = Consumer::read_list(list);
        unsafe { (self.api.list_destroy)(list) };
        self.check(code, "position")?;
        Ok(read)
    }

    /// The cached (low, high) watermarks of a partition, -1001 for what is not known (asks the broker nothing).
    fn get_watermark_offsets(&self, topic: &str, partition: i32) -> PyResult<(i64, i64)> {
        let rk = self.handle()?.rk;
        let name = CString::new(topic).map_err(|_| PyValueError::new_err("a topic holds a NUL"))?;
        let (mut low, mut high) = (-1001i64, -1001i64);
        // SAFETY: the handle is open; the name lives through the call.
        let code = unsafe { (self.api.get_watermark_offsets)(rk, name.as_ptr(), partition, &mut low, &mut high) };
        self.check(code, "get_watermark_offsets")?;
        Ok((low, high))
    }

    fn seek(&self, py: Python<'_>, partitions: Partitions, timeout: f64) -> PyResult<()> {
        let rk = self.handle()?.rk as usize;
        let list = self.list(&partitions)? as usize;
        let api = &self.api;
        // SAFETY: the handle is open, the list ours; its per-partition errors read before it is destroyed.
        let (code, text, failed) = py.allow_threads(|| unsafe {
            let error = (api.seek_partitions)(rk as *mut c_void, list as *mut RdList, (timeout * 1000.0) as c_int);
            let failed = Consumer::errors_of(list as *const RdList);
            (api.list_destroy)(list as *mut RdList);
            if error.is_null() {
                return (0, String::new(), failed);
            }
            let code = (api.error_code)(error);
            let text = CStr::from_ptr((api.error_string)(error)).to_string_lossy().into_owned();
            (api.error_destroy)(error);
            (code, text, failed)
        });
        if code != 0 {
            return Err(kafka_exception(code, &format!("seek: {text}")));
        }
        match failed {
            Some(code) => self.check(code, "seek"),
            None => Ok(()),
        }
    }

    fn pause(&self, partitions: Partitions) -> PyResult<()> {
        self.with_list(partitions, "pause", self.api.pause_partitions)
    }

    fn resume(&self, partitions: Partitions) -> PyResult<()> {
        self.with_list(partitions, "resume", self.api.resume_partitions)
    }

    /// The group metadata serialized as confluent-kafka's consumer_group_metadata() gives it (its producer's
    /// send_offsets_to_transaction reads these bytes back with the same library).
    fn consumer_group_metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let rk = self.handle()?.rk;
        // SAFETY: metadata made, written to a buffer librdkafka allocates, both freed here.
        unsafe {
            let metadata = (self.api.group_metadata)(rk);
            if metadata.is_null() {
                return Err(PyRuntimeError::new_err("the consumer has no group metadata (no group.id)"));
            }
            let (mut buffer, mut size): (*mut c_void, usize) = (std::ptr::null_mut(), 0);
            let error = (self.api.group_metadata_write)(metadata, &mut buffer, &mut size);
            (self.api.group_metadata_destroy)(metadata);
            if !error.is_null() {
                let code = (self.api.error_code)(error);
                (self.api.error_destroy)(error);
                return Err(kafka_exception(code, "consumer_group_metadata"));
            }
            let bytes = PyBytes::new(py, std::slice::from_raw_parts(buffer as *const u8, size));
            (self.api.mem_free)(rk, buffer);
            Ok(bytes)
        }
    }

    /// The latest statistics JSON librdkafka emitted since the last call (statistics.interval.ms), if any.
    fn take_statistics(&self) -> PyResult<Option<String>> {
        let kept = self.handle()?.statistics;
        // SAFETY: the mutex lives until close.
        let taken = unsafe { &*kept }.lock().map(|mut latest| latest.take()).unwrap_or(None);
        Ok(taken)
    }

    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        let Some(handle) = self.handle.take() else { return Ok(()) };
        let api = &self.api;
        let (rk, queue, statistics) = (handle.rk as usize, handle.queue as usize, handle.statistics as usize);
        let code = py.allow_threads(|| unsafe {
            // SAFETY: closed once: the queue, then the consumer, then the handle, then the statistics.
            (api.queue_destroy)(queue as *mut c_void);
            let code = (api.consumer_close)(rk as *mut c_void);
            (api.destroy)(rk as *mut c_void);
            drop(Box::from_raw(statistics as *mut Mutex<Option<String>>));
            code
        });
        self.names.clear();
        self.check(code, "close")
    }
}

impl Consumer {
    /// The first per-partition error librdkafka left in a list, if any.
    fn errors_of(list: *const RdList) -> Option<c_int> {
        // SAFETY: a list of cnt elements.
        unsafe { (0..(*list).cnt as usize).map(|i| (*(*list).elems.add(i)).err).find(|&e| e != 0) }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if self.handle.is_some() {
            Python::with_gil(|py| {
                let _ = self.close(py);
            });
        }
    }
}
