//! Owned nvlists for libzfs_core arguments, and reading the nvlists it
//! returns into Rust values.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use lxc_sys as sys;

/// An nvlist this process owns; freed on drop.
pub(super) struct NvList(NonNull<sys::nvlist_t>);

/// A value read out of an nvlist.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum NvValue {
    Int(i64),
    Uint(u64),
    Str(String),
    List(BTreeMap<String, NvValue>),
    /// A type pvecri does not read.
    Other,
}

impl NvValue {
    pub(super) fn as_u64(&self) -> Option<u64> {
        match self {
            NvValue::Int(v) => u64::try_from(*v).ok(),
            NvValue::Uint(v) => Some(*v),
            _ => None,
        }
    }
}

impl NvList {
    pub(super) fn new() -> NvList {
        // SAFETY: fnvlist_alloc has no preconditions; it aborts the process
        // rather than return NULL on allocation failure.
        let raw = unsafe { sys::fnvlist_alloc() };
        NvList(NonNull::new(raw).expect("fnvlist_alloc never returns NULL"))
    }

    /// Takes ownership of a list libzfs_core allocated; NULL gives None.
    ///
    /// # Safety
    /// `raw` must be NULL or an nvlist nobody else frees.
    pub(super) unsafe fn from_raw(raw: *mut sys::nvlist_t) -> Option<NvList> {
        NonNull::new(raw).map(NvList)
    }

    pub(super) fn as_ptr(&self) -> *mut sys::nvlist_t {
        self.0.as_ptr()
    }

    pub(super) fn add_string(&mut self, key: &CStr, value: &CStr) {
        // SAFETY: the list is valid and owned; both strings are
        // NUL-terminated and are copied into the list.
        unsafe { sys::fnvlist_add_string(self.as_ptr(), key.as_ptr(), value.as_ptr()) }
    }

    pub(super) fn add_boolean(&mut self, key: &CStr) {
        // SAFETY: as in add_string; the key is copied.
        unsafe { sys::fnvlist_add_boolean(self.as_ptr(), key.as_ptr()) }
    }

    pub(super) fn add_string_array(&mut self, key: &CStr, values: &[CString]) {
        let ptrs: Vec<*mut libc::c_char> = values.iter().map(|v| v.as_ptr().cast_mut()).collect();
        let len = u32::try_from(ptrs.len()).expect("a handful of arguments");
        // SAFETY: `ptrs` holds `len` valid NUL-terminated strings that
        // outlive the call; the list copies them and never writes through
        // the pointers (the C parameter is `char *const *`).
        unsafe { sys::fnvlist_add_string_array(self.as_ptr(), key.as_ptr(), ptrs.as_ptr(), len) }
    }

    /// Every pair of the list, nested lists included.
    pub(super) fn to_map(&self) -> BTreeMap<String, NvValue> {
        // SAFETY: the list is valid for the duration of the call.
        unsafe { read_list(self.as_ptr()) }
    }
}

impl Drop for NvList {
    fn drop(&mut self) {
        // SAFETY: the list is owned (see new/from_raw) and freed once.
        unsafe { sys::fnvlist_free(self.as_ptr()) }
    }
}

/// Reads a borrowed nvlist.
///
/// # Safety
/// `list` must be a valid nvlist for the duration of the call.
unsafe fn read_list(list: *mut sys::nvlist_t) -> BTreeMap<String, NvValue> {
    let mut out = BTreeMap::new();
    let mut pair: *mut sys::nvpair_t = std::ptr::null_mut();
    loop {
        // SAFETY: `list` is valid; `pair` is NULL or the previous pair of it.
        pair = unsafe { sys::nvlist_next_nvpair(list, pair) };
        if pair.is_null() {
            break;
        }
        // SAFETY: a pair's name is a NUL-terminated string it owns.
        let name = unsafe { CStr::from_ptr(sys::nvpair_name(pair)) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: `pair` is a valid pair of `list`; each value getter is
        // called only for its own type and writes one value of it.
        let value = unsafe {
            match sys::nvpair_type(pair) {
                sys::data_type_t_DATA_TYPE_INT64 => {
                    let mut v = 0i64;
                    if sys::nvpair_value_int64(pair, &mut v) == 0 {
                        NvValue::Int(v)
                    } else {
                        NvValue::Other
                    }
                }
                sys::data_type_t_DATA_TYPE_UINT64 => {
                    let mut v = 0u64;
                    if sys::nvpair_value_uint64(pair, &mut v) == 0 {
                        NvValue::Uint(v)
                    } else {
                        NvValue::Other
                    }
                }
                sys::data_type_t_DATA_TYPE_STRING => {
                    let mut v: *mut libc::c_char = std::ptr::null_mut();
                    if sys::nvpair_value_string(pair, &mut v) == 0 && !v.is_null() {
                        NvValue::Str(CStr::from_ptr(v).to_string_lossy().into_owned())
                    } else {
                        NvValue::Other
                    }
                }
                sys::data_type_t_DATA_TYPE_NVLIST => {
                    let mut v: *mut sys::nvlist_t = std::ptr::null_mut();
                    if sys::nvpair_value_nvlist(pair, &mut v) == 0 && !v.is_null() {
                        NvValue::List(read_list(v))
                    } else {
                        NvValue::Other
                    }
                }
                _ => NvValue::Other,
            }
        };
        out.insert(name, value);
    }
    out
}
