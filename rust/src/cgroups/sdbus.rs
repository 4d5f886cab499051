//! The systemd cgroup driver's D-Bus client: libsystemd's sd-bus, loaded with dlopen.
//!
//! Why sd-bus and why dlopen: the driver's Python client was jeepney (pure Python), whose
//! import (typing, enum, re and its own modules) costs ~10 ms on the host and ~650 ms in
//! the emulated guest, where every module is several 9p reads; module execution holds
//! the GIL, so a prefetch thread could not hide it. sd-bus is systemd's own client
//! library, in libsystemd.so.0, which is present wherever systemd runs; runh links
//! nothing new (no crate, no build dependency): the library is opened at the first
//! --systemd-cgroup call, never otherwise, and its functions are called through typed
//! pointers. Cost measured on this host (`dlopen` + resolving the symbols, a fresh
//! process): see python/runh/cgroups/_dbus.py's doc, which has the figures.
//!
//! Only the fixed-argument functions are used (messages are built with append_basic and
//! open/close_container from a D-Bus signature and Python values, and read back with
//! peek_type/read_basic/enter_container), so no variadic call crosses the boundary.
//! The protocol logic that is runh's own (which replies and signals to wait for,
//! systemd's nudge) stays in Python (`_dbus.Connection`); this module sends a method
//! call and hands back the next message.
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

#[repr(C)]
struct SdBusError {
    name: *const c_char,
    message: *const c_char,
    _need_free: c_int,
}

type Bus = c_void;
type Msg = c_void;

#[allow(clippy::type_complexity)]
struct Lib {
    new: unsafe extern "C" fn(*mut *mut Bus) -> c_int,
    set_address: unsafe extern "C" fn(*mut Bus, *const c_char) -> c_int,
    set_bus_client: unsafe extern "C" fn(*mut Bus, c_int) -> c_int,
    start: unsafe extern "C" fn(*mut Bus) -> c_int,
    is_ready: unsafe extern "C" fn(*mut Bus) -> c_int,
    close_unref: unsafe extern "C" fn(*mut Bus) -> *mut Bus,
    process: unsafe extern "C" fn(*mut Bus, *mut *mut Msg) -> c_int,
    wait: unsafe extern "C" fn(*mut Bus, u64) -> c_int,
    flush: unsafe extern "C" fn(*mut Bus) -> c_int,
    send: unsafe extern "C" fn(*mut Bus, *mut Msg, *mut u64) -> c_int,
    new_method_call:
        unsafe extern "C" fn(*mut Bus, *mut *mut Msg, *const c_char, *const c_char, *const c_char, *const c_char) -> c_int,
    set_expect_reply: unsafe extern "C" fn(*mut Msg, c_int) -> c_int,
    append_basic: unsafe extern "C" fn(*mut Msg, c_char, *const c_void) -> c_int,
    open_container: unsafe extern "C" fn(*mut Msg, c_char, *const c_char) -> c_int,
    close_container: unsafe extern "C" fn(*mut Msg) -> c_int,
    msg_unref: unsafe extern "C" fn(*mut Msg) -> *mut Msg,
    get_type: unsafe extern "C" fn(*mut Msg, *mut u8) -> c_int,
    get_reply_cookie: unsafe extern "C" fn(*mut Msg, *mut u64) -> c_int,
    get_member: unsafe extern "C" fn(*mut Msg) -> *const c_char,
    get_error: unsafe extern "C" fn(*mut Msg) -> *const SdBusError,
    peek_type: unsafe extern "C" fn(*mut Msg, *mut c_char, *mut *const c_char) -> c_int,
    read_basic: unsafe extern "C" fn(*mut Msg, c_char, *mut c_void) -> c_int,
    enter_container: unsafe extern "C" fn(*mut Msg, c_char, *const c_char) -> c_int,
    exit_container: unsafe extern "C" fn(*mut Msg) -> c_int,
}

// Safety: the struct holds only function pointers into a library that is never closed.
unsafe impl Send for Lib {}
unsafe impl Sync for Lib {}

static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();

fn dlerror() -> String {
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown dlopen error".into()
    } else {
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

fn load() -> Result<Lib, String> {
    let h = unsafe { libc::dlopen(c"libsystemd.so.0".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if h.is_null() {
        return Err(format!("cannot load libsystemd.so.0 (systemd's sd-bus): {}", dlerror()));
    }
    macro_rules! sym {
        ($name:literal) => {{
            let p = unsafe { libc::dlsym(h, concat!($name, "\0").as_ptr() as *const c_char) };
            if p.is_null() {
                return Err(format!("libsystemd.so.0 has no {}: {}", $name, dlerror()));
            }
            // Safety: the pointer is the named sd-bus function, whose C signature the
            // field's type repeats (sd-bus(3)).
            unsafe { std::mem::transmute::<*mut c_void, _>(p) }
        }};
    }
    Ok(Lib {
        new: sym!("sd_bus_new"),
        set_address: sym!("sd_bus_set_address"),
        set_bus_client: sym!("sd_bus_set_bus_client"),
        start: sym!("sd_bus_start"),
        is_ready: sym!("sd_bus_is_ready"),
        close_unref: sym!("sd_bus_flush_close_unref"),
        process: sym!("sd_bus_process"),
        wait: sym!("sd_bus_wait"),
        flush: sym!("sd_bus_flush"),
        send: sym!("sd_bus_send"),
        new_method_call: sym!("sd_bus_message_new_method_call"),
        set_expect_reply: sym!("sd_bus_message_set_expect_reply"),
        append_basic: sym!("sd_bus_message_append_basic"),
        open_container: sym!("sd_bus_message_open_container"),
        close_container: sym!("sd_bus_message_close_container"),
        msg_unref: sym!("sd_bus_message_unref"),
        get_type: sym!("sd_bus_message_get_type"),
        get_reply_cookie: sym!("sd_bus_message_get_reply_cookie"),
        get_member: sym!("sd_bus_message_get_member"),
        get_error: sym!("sd_bus_message_get_error"),
        peek_type: sym!("sd_bus_message_peek_type"),
        read_basic: sym!("sd_bus_message_read_basic"),
        enter_container: sym!("sd_bus_message_enter_container"),
        exit_container: sym!("sd_bus_message_exit_container"),
    })
}

fn lib() -> PyResult<&'static Lib> {
    LIB.get_or_init(load).as_ref().map_err(|e| PyOSError::new_err((libc::ENOENT, e.clone())))
}

/// A negative sd-bus return as OSError(errno, "<what>: <strerror>"); Python's OSError
/// turns ENOENT and ECONNREFUSED into FileNotFoundError and ConnectionRefusedError.
fn check(r: c_int, what: &str) -> PyResult<c_int> {
    if r >= 0 {
        return Ok(r);
    }
    let errno = -r;
    let text = std::io::Error::from_raw_os_error(errno);
    Err(PyOSError::new_err((errno, format!("{what}: {text}"))))
}

fn cstr(s: &str) -> PyResult<CString> {
    CString::new(s).map_err(|_| PyValueError::new_err(format!("{s:?}: a NUL byte")))
}

/// The end (exclusive) of the single complete type that starts at sig[i].
fn one_type(sig: &[u8], i: usize) -> PyResult<usize> {
    let bad = || PyValueError::new_err(format!("bad D-Bus signature {:?}", String::from_utf8_lossy(sig)));
    match sig.get(i).ok_or_else(bad)? {
        b'a' => one_type(sig, i + 1),
        open @ (b'(' | b'{') => {
            let close = if *open == b'(' { b')' } else { b'}' };
            let mut j = i + 1;
            while sig.get(j).ok_or_else(bad)? != &close {
                j = one_type(sig, j)?;
            }
            Ok(j + 1)
        }
        b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b's' | b'o' | b'g' | b'v' => Ok(i + 1),
        _ => Err(bad()),
    }
}

/// The types of a signature, one by one.
fn split(sig: &[u8]) -> PyResult<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < sig.len() {
        let j = one_type(sig, i)?;
        out.push(&sig[i..j]);
        i = j;
    }
    Ok(out)
}

struct Message<'l> {
    lib: &'l Lib,
    m: *mut Msg,
}

impl Drop for Message<'_> {
    fn drop(&mut self) {
        if !self.m.is_null() {
            unsafe { (self.lib.msg_unref)(self.m) };
        }
    }
}

impl Message<'_> {
    fn open(&self, kind: u8, contents: &[u8]) -> PyResult<()> {
        let c = CString::new(contents).map_err(|_| PyValueError::new_err("signature with a NUL byte"))?;
        check(unsafe { (self.lib.open_container)(self.m, kind as c_char, c.as_ptr()) }, "open a container")?;
        Ok(())
    }

    fn close(&self) -> PyResult<()> {
        check(unsafe { (self.lib.close_container)(self.m) }, "close a container")?;
        Ok(())
    }

    fn basic<T>(&self, t: u8, v: &T) -> PyResult<()> {
        let r = unsafe { (self.lib.append_basic)(self.m, t as c_char, v as *const T as *const c_void) };
        check(r, "append a value")?;
        Ok(())
    }

    /// Append `v` as the single complete type `t`: variants are (signature, value)
    /// pairs, structs and dict entries tuples, arrays sequences (a dict for a{..}, bytes
    /// for ay): the values runh.cgroups.systemd builds, as jeepney took them.
    fn append(&self, t: &[u8], v: &Bound<'_, PyAny>) -> PyResult<()> {
        match t[0] {
            b'y' => self.basic(b'y', &v.extract::<u8>()?),
            b'b' => self.basic(b'b', &(v.is_truthy()? as c_int)),
            b'n' => self.basic(b'n', &v.extract::<i16>()?),
            b'q' => self.basic(b'q', &v.extract::<u16>()?),
            b'i' => self.basic(b'i', &v.extract::<i32>()?),
            b'u' => self.basic(b'u', &v.extract::<u32>()?),
            b'x' => self.basic(b'x', &v.extract::<i64>()?),
            b't' => self.basic(b't', &v.extract::<u64>()?),
            b'd' => self.basic(b'd', &v.extract::<f64>()?),
            b's' | b'o' | b'g' => {
                let s = cstr(&v.extract::<String>()?)?;
                // A string type's pointer is the string itself (sd_bus_message_append_basic(3)).
                let r = unsafe { (self.lib.append_basic)(self.m, t[0] as c_char, s.as_ptr() as *const c_void) };
                check(r, "append a string")?;
                Ok(())
            }
            b'v' => {
                let (sig, inner): (String, Bound<'_, PyAny>) = v.extract()?;
                let sig_b = sig.as_bytes();
                if sig_b.is_empty() || one_type(sig_b, 0)? != sig_b.len() {
                    return Err(PyValueError::new_err(format!("a variant holds one complete type, not {sig:?}")));
                }
                self.open(b'v', sig_b)?;
                self.append(sig_b, &inner)?;
                self.close()
            }
            b'a' => {
                let elem = &t[1..];
                self.open(b'a', elem)?;
                if elem[0] == b'{' {
                    let d = v.downcast::<PyDict>()?;
                    for (k, val) in d.iter() {
                        self.append(elem, &PyTuple::new(v.py(), [k, val])?.into_any())?;
                    }
                } else if elem == b"y" && v.is_instance_of::<PyBytes>() {
                    for b in v.downcast::<PyBytes>()?.as_bytes() {
                        self.basic(b'y', b)?;
                    }
                } else {
                    for item in v.try_iter()? {
                        self.append(elem, &item?)?;
                    }
                }
                self.close()
            }
            open @ (b'(' | b'{') => {
                let inner = &t[1..t.len() - 1];
                self.open(if open == b'(' { b'r' } else { b'e' }, inner)?;
                let types = split(inner)?;
                let items = v.downcast::<PyTuple>().map_err(|_| PyTypeError::new_err("a struct is a tuple"))?;
                if items.len() != types.len() {
                    return Err(PyValueError::new_err(format!(
                        "a struct of {} fields given {} values", types.len(), items.len())));
                }
                for (ty, item) in types.iter().zip(items.iter()) {
                    self.append(ty, &item)?;
                }
                self.close()
            }
            _ => Err(PyValueError::new_err("unsupported D-Bus type")),
        }
    }

    fn read_into<T: Default>(&self, t: c_char) -> PyResult<T> {
        let mut v = T::default();
        check(unsafe { (self.lib.read_basic)(self.m, t, &mut v as *mut T as *mut c_void) }, "read a value")?;
        Ok(v)
    }

    /// The next value, or None at the end of the current container.
    fn read(&self, py: Python<'_>) -> PyResult<Option<PyObject>> {
        let mut t: c_char = 0;
        let mut contents: *const c_char = std::ptr::null();
        if check(unsafe { (self.lib.peek_type)(self.m, &mut t, &mut contents) }, "read a message")? == 0 {
            return Ok(None);
        }
        let contents = if contents.is_null() {
            Vec::new()
        } else {
            unsafe { CStr::from_ptr(contents) }.to_bytes().to_vec()
        };
        let v: PyObject = match t as u8 {
            b'y' => self.read_into::<u8>(t)?.into_pyobject(py)?.into_any().unbind(),
            b'b' => {
                let mut b: c_int = 0;
                check(unsafe { (self.lib.read_basic)(self.m, t, &mut b as *mut c_int as *mut c_void) }, "read")?;
                (b != 0).into_pyobject(py)?.to_owned().into_any().unbind()
            }
            b'n' => self.read_into::<i16>(t)?.into_pyobject(py)?.into_any().unbind(),
            b'q' => self.read_into::<u16>(t)?.into_pyobject(py)?.into_any().unbind(),
            b'i' => self.read_into::<i32>(t)?.into_pyobject(py)?.into_any().unbind(),
            b'u' => self.read_into::<u32>(t)?.into_pyobject(py)?.into_any().unbind(),
            b'x' => self.read_into::<i64>(t)?.into_pyobject(py)?.into_any().unbind(),
            b't' => self.read_into::<u64>(t)?.into_pyobject(py)?.into_any().unbind(),
            b'd' => self.read_into::<f64>(t)?.into_pyobject(py)?.into_any().unbind(),
            b'h' => self.read_into::<c_int>(t)?.into_pyobject(py)?.into_any().unbind(),
            b's' | b'o' | b'g' => {
                let mut p: *const c_char = std::ptr::null();
                check(unsafe { (self.lib.read_basic)(self.m, t, &mut p as *mut *const c_char as *mut c_void) }, "read")?;
                let s = if p.is_null() { String::new() } else { unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned() };
                s.into_pyobject(py)?.into_any().unbind()
            }
            kind @ (b'a' | b'r' | b'e' | b'v') => {
                let c = CString::new(contents.clone()).unwrap_or_default();
                check(unsafe { (self.lib.enter_container)(self.m, t, c.as_ptr()) }, "read a container")?;
                let mut items = Vec::new();
                while let Some(item) = self.read(py)? {
                    items.push(item);
                }
                check(unsafe { (self.lib.exit_container)(self.m) }, "read a container")?;
                match kind {
                    b'v' => {
                        let sig = String::from_utf8_lossy(&contents).into_owned();
                        let inner = items.into_iter().next().unwrap_or_else(|| py.None());
                        PyTuple::new(py, [sig.into_pyobject(py)?.into_any().unbind(), inner])?.into_any().unbind()
                    }
                    b'a' if contents.first() == Some(&b'{') => {
                        let d = PyDict::new(py);
                        for e in items {
                            let e = e.bind(py);
                            d.set_item(e.get_item(0)?, e.get_item(1)?)?;
                        }
                        d.into_any().unbind()
                    }
                    b'a' if contents == b"y" => {
                        let bytes: Vec<u8> = items.iter().map(|b| b.extract::<u8>(py)).collect::<PyResult<_>>()?;
                        PyBytes::new(py, &bytes).into_any().unbind()
                    }
                    b'a' => PyList::new(py, items)?.into_any().unbind(),
                    _ => PyTuple::new(py, items)?.into_any().unbind(),
                }
            }
            _ => return Err(PyValueError::new_err(format!("unsupported D-Bus type {:?}", t as u8 as char))),
        };
        Ok(Some(v))
    }
}

/// Escape a socket path for a D-Bus address ("unix:path=…"): bytes other than
/// [A-Za-z0-9_/.\-*] as %XX (the D-Bus specification's "Server Addresses").
fn address(path: &str) -> String {
    let mut out = String::from("unix:path=");
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"_/.\\-*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// One sd-bus connection to a peer socket (systemd's private one), or with `hello` to a
/// bus daemon (the host's tests use a private dbus-daemon).
/// The sd_bus pointer is held as an address under a mutex: an sd_bus object may move
/// between threads as long as one uses it at a time (sd-bus(3)), and runh's prefetch
/// thread makes the connection that the main thread then uses.
#[pyclass(module = "runh._core")]
pub struct SdBus {
    bus: std::sync::Mutex<usize>,
}

impl Drop for SdBus {
    fn drop(&mut self) {
        self.close();
    }
}

const MSG_METHOD_RETURN: u8 = 2;

#[pymethods]
impl SdBus {
    /// Connect to the socket at `path` and authenticate (SASL EXTERNAL: the peer takes
    /// the uid from SO_PEERCRED, so it works inside a user namespace too), waiting at
    /// most `timeout` seconds.
    #[new]
    #[pyo3(signature = (path, timeout=30.0, hello=false))]
    fn new(py: Python<'_>, path: &str, timeout: f64, hello: bool) -> PyResult<Self> {
        let addr = cstr(&address(path))?;
        let r: PyResult<usize> = py.allow_threads(|| {
            let l = lib()?;
            let mut bus: *mut Bus = std::ptr::null_mut();
            check(unsafe { (l.new)(&mut bus) }, "sd_bus_new")?;
            let me = SdBus { bus: std::sync::Mutex::new(bus as usize) };
            check(unsafe { (l.set_address)(bus, addr.as_ptr()) }, "sd_bus_set_address")?;
            check(unsafe { (l.set_bus_client)(bus, hello as c_int) }, "sd_bus_set_bus_client")?;
            check(unsafe { (l.start)(bus) }, path)?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(timeout);
            while check(unsafe { (l.is_ready)(bus) }, path)? == 0 {
                if check(unsafe { (l.process)(bus, std::ptr::null_mut()) }, path)? > 0 {
                    continue;
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(PyOSError::new_err((libc::ETIMEDOUT, format!("{path}: no answer to the authentication"))));
                }
                check(unsafe { (l.wait)(bus, left.as_micros() as u64) }, path)?;
            }
            let taken = std::mem::take(&mut *me.bus.lock().unwrap());
            Ok(taken)
        });
        Ok(SdBus { bus: std::sync::Mutex::new(r?) })
    }

    /// Send a method call: `body` is a tuple of Python values of signature `sig`.
    /// Returns its cookie (the serial its reply names).
    #[pyo3(signature = (dest, path, iface, member, sig, body, expect_reply=true))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        sig: Option<&str>,
        body: &Bound<'_, PyAny>,
        expect_reply: bool,
    ) -> PyResult<u64> {
        let l = lib()?;
        let guard = self.open()?;
        let bus = *guard as *mut Bus;
        let (d, p, i, m) = (cstr(dest)?, cstr(path)?, cstr(iface)?, cstr(member)?);
        let mut msg = Message { lib: l, m: std::ptr::null_mut() };
        check(
            unsafe { (l.new_method_call)(bus, &mut msg.m, d.as_ptr(), p.as_ptr(), i.as_ptr(), m.as_ptr()) },
            member,
        )?;
        if !expect_reply {
            check(unsafe { (l.set_expect_reply)(msg.m, 0) }, member)?;
        }
        if let Some(sig) = sig {
            let types = split(sig.as_bytes())?;
            let values: Vec<Bound<'_, PyAny>> = body.try_iter()?.collect::<PyResult<_>>()?;
            if values.len() != types.len() {
                return Err(PyValueError::new_err(format!("{member}: signature {sig:?} given {} values", values.len())));
            }
            for (t, v) in types.iter().zip(values.iter()) {
                msg.append(t, v)?;
            }
        }
        let mut cookie = 0u64;
        check(unsafe { (l.send)(bus, msg.m, &mut cookie) }, member)?;
        // Written now, not at the next process(): the peer may be waiting for it.
        check(unsafe { (l.flush)(bus) }, member)?;
        Ok(cookie)
    }

    /// The next message, waiting at most `timeout` seconds (None then): (kind,
    /// reply_cookie, member, error_name, error_message, body) with kind "return",
    /// "error", "signal" or "call" (a method call to this connection: only the host's
    /// tests make one, to see what a client sent).
    fn next(&self, py: Python<'_>, timeout: f64) -> PyResult<Option<PyObject>> {
        let l = lib()?;
        let guard = self.open()?;
        let bus = *guard;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(timeout.max(0.0));
        let got: PyResult<usize> = py.allow_threads(|| loop {
            let bus = bus as *mut Bus;
            let mut m: *mut Msg = std::ptr::null_mut();
            let r = check(unsafe { (l.process)(bus, &mut m) }, "read from systemd")?;
            if !m.is_null() {
                let mut t = 0u8;
                unsafe { (l.get_type)(m, &mut t) };
                if (1..=4).contains(&t) {
                    return Ok(m as usize);
                }
                unsafe { (l.msg_unref)(m) };
                continue;
            }
            if r > 0 {
                continue;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(0);
            }
            check(unsafe { (l.wait)(bus, left.as_micros().max(1) as u64) }, "wait for systemd")?;
        });
        drop(guard);
        let got = got?;
        if got == 0 {
            return Ok(None);
        }
        let msg = Message { lib: l, m: got as *mut Msg };
        let mut t = 0u8;
        unsafe { (l.get_type)(msg.m, &mut t) };
        let mut reply = 0u64;
        unsafe { (l.get_reply_cookie)(msg.m, &mut reply) };
        let opt = |p: *const c_char| {
            if p.is_null() {
                None
            } else {
                Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
            }
        };
        let member = opt(unsafe { (l.get_member)(msg.m) });
        let (mut ename, mut etext) = (None, None);
        if t == 3 {
            let e = unsafe { (l.get_error)(msg.m) };
            if !e.is_null() {
                ename = opt(unsafe { (*e).name });
                etext = opt(unsafe { (*e).message });
            }
        }
        let mut body = Vec::new();
        while let Some(v) = msg.read(py)? {
            body.push(v);
        }
        let kind = match t {
            1 => "call",
            MSG_METHOD_RETURN => "return",
            3 => "error",
            _ => "signal",
        };
        let out = (kind, reply, member, ename, etext, PyTuple::new(py, body)?);
        Ok(Some(out.into_pyobject(py)?.into_any().unbind()))
    }

    /// Close the connection (what is queued is written first).
    fn close(&self) {
        let mut bus = self.bus.lock().unwrap_or_else(|e| e.into_inner());
        if *bus != 0 {
            if let Ok(l) = lib() {
                unsafe { (l.close_unref)(*bus as *mut Bus) };
            }
            *bus = 0;
        }
    }
}

impl SdBus {
    fn open(&self) -> PyResult<std::sync::MutexGuard<'_, usize>> {
        let bus = self.bus.lock().map_err(|_| PyOSError::new_err((libc::EIO, "the D-Bus connection is broken")))?;
        if *bus == 0 {
            return Err(PyOSError::new_err((libc::ENOTCONN, "the D-Bus connection is closed")));
        }
        Ok(bus)
    }
}

/// The `SdBus` class, made on first use (python.rs `__getattr__`), not at import.
pub fn class(py: Python<'_>) -> PyResult<PyObject> {
    Ok(py.get_type::<SdBus>().into_any().unbind())
}
