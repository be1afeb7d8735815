//! [`ZfsOps`] over libzfs_core: creation, clones, snapshots, renames and
//! destruction through the `lzc_*` calls, and the queries libzfs_core has
//! no call for (children, snapshots, properties) through read-only channel
//! programs, which run in the kernel and are part of the same ioctl API.

use std::ffi::CString;
use std::path::Path;
use std::sync::OnceLock;

use lxc_sys as sys;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::nvlist::{NvList, NvValue};
use super::{pool_of, Space, ZfsError, ZfsOps};

/// Limits of one channel program: the kernel's defaults (ten million Lua
/// instructions, 10 MiB).
const PROGRAM_INSTRUCTIONS: u64 = 10_000_000;
const PROGRAM_MEMORY: u64 = 10 << 20;

/// Direct child filesystems of argv[1], as a table of name -> 1.
const CHILDREN: &str = r#"
local name = (...)["argv"][1]
local out = {}
for child in zfs.list.children(name) do out[child] = 1 end
return out
"#;

/// Snapshots of argv[1], as a table of name -> 1.
const SNAPSHOTS: &str = r#"
local name = (...)["argv"][1]
local out = {}
for snap in zfs.list.snapshots(name) do out[snap] = 1 end
return out
"#;

/// The properties pvecri reads of argv[1].
const PROPERTIES: &str = r#"
local name = (...)["argv"][1]
return {
  used = zfs.get_prop(name, "used"),
  referenced = zfs.get_prop(name, "referenced"),
  available = zfs.get_prop(name, "available"),
  mountpoint = zfs.get_prop(name, "mountpoint"),
}
"#;

/// libzfs_core, opened once per process (it keeps /dev/zfs open).
pub(crate) struct Lzc(());

static INIT: OnceLock<Result<(), i32>> = OnceLock::new();

impl Lzc {
    pub(crate) fn open() -> Result<Lzc, ZfsError> {
        let result = INIT.get_or_init(|| {
            // SAFETY: libzfs_core_init has no preconditions; it opens
            // /dev/zfs and returns an errno on failure. It is called once
            // per process (OnceLock) and libzfs_core_fini never.
            match unsafe { sys::libzfs_core_init() } {
                0 => Ok(()),
                errno => Err(errno),
            }
        });
        match result {
            Ok(()) => Ok(Lzc(())),
            Err(errno) => Err(ZfsError::NoDevice {
                source: std::io::Error::from_raw_os_error(*errno),
            }),
        }
    }

    fn run_program(&self, dataset: &str, program: &str) -> Result<NvValue, ZfsError> {
        let query = |message: String| ZfsError::Query {
            dataset: dataset.to_owned(),
            message,
        };
        let pool = cstring(pool_of(dataset))?;
        let code = CString::new(program).expect("programs are constants without NUL");
        let mut args = NvList::new();
        args.add_string_array(c"argv", &[cstring(dataset)?]);
        let mut out: *mut sys::nvlist_t = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: NUL-terminated pool
        // and program, an owned argument list, and `out`, which receives a
        // list the caller owns (taken over right after).
        let rc = unsafe {
            sys::lzc_channel_program_nosync(
                pool.as_ptr(),
                code.as_ptr(),
                PROGRAM_INSTRUCTIONS,
                PROGRAM_MEMORY,
                args.as_ptr(),
                &mut out,
            )
        };
        // SAFETY: `out` is NULL or a list libzfs_core allocated for us.
        let out = unsafe { NvList::from_raw(out) };
        let mut map = out.map(|o| o.to_map()).unwrap_or_default();
        if rc != 0 {
            let detail = match map.remove("error") {
                Some(NvValue::Str(s)) => format!(": {s}"),
                _ => String::new(),
            };
            return Err(query(format!(
                "{}{detail}",
                std::io::Error::from_raw_os_error(rc)
            )));
        }
        map.remove("return")
            .ok_or_else(|| query("the channel program returned nothing".to_owned()))
    }

    fn names(&self, dataset: &str, program: &str) -> Result<Vec<String>, ZfsError> {
        match self.run_program(dataset, program)? {
            NvValue::List(map) => Ok(map.into_keys().collect()),
            other => Err(ZfsError::Query {
                dataset: dataset.to_owned(),
                message: format!("unexpected answer {other:?}"),
            }),
        }
    }

    fn properties(
        &self,
        dataset: &str,
    ) -> Result<std::collections::BTreeMap<String, NvValue>, ZfsError> {
        match self.run_program(dataset, PROPERTIES)? {
            NvValue::List(map) => Ok(map),
            other => Err(ZfsError::Query {
                dataset: dataset.to_owned(),
                message: format!("unexpected answer {other:?}"),
            }),
        }
    }
}

fn cstring(name: &str) -> Result<CString, ZfsError> {
    CString::new(name).map_err(|_| ZfsError::BadName {
        dataset: name.to_owned(),
        why: "contains NUL",
    })
}

/// `mountpoint=legacy`: mounted by pvecri, never by the ZFS services.
fn legacy_props() -> NvList {
    let mut props = NvList::new();
    props.add_string(c"mountpoint", c"legacy");
    props
}

/// Frees the error list some calls return; the return code says enough.
fn drop_errlist(errlist: *mut sys::nvlist_t) {
    // SAFETY: NULL or a list libzfs_core allocated for the caller.
    drop(unsafe { NvList::from_raw(errlist) });
}

fn check(op: &'static str, dataset: &str, rc: i32) -> Result<(), ZfsError> {
    match rc {
        0 => Ok(()),
        errno => Err(ZfsError::from_errno(op, dataset, errno)),
    }
}

impl ZfsOps for Lzc {
    fn exists(&self, name: &str) -> bool {
        let Ok(c) = cstring(name) else { return false };
        // SAFETY: a NUL-terminated name; lzc_exists only reads it.
        unsafe { sys::lzc_exists(c.as_ptr()) != 0 }
    }

    fn create(&self, name: &str) -> Result<(), ZfsError> {
        let c = cstring(name)?;
        let props = legacy_props();
        // SAFETY: valid name and property list; no encryption key (NULL, 0).
        let rc = unsafe {
            sys::lzc_create(
                c.as_ptr(),
                sys::lzc_dataset_type::LZC_DATSET_TYPE_ZFS,
                props.as_ptr(),
                std::ptr::null_mut(),
                0,
            )
        };
        check("create", name, rc)
    }

    fn clone_snapshot(&self, name: &str, origin: &str) -> Result<(), ZfsError> {
        let (c, o) = (cstring(name)?, cstring(origin)?);
        let props = legacy_props();
        // SAFETY: valid NUL-terminated names and an owned property list.
        let rc = unsafe { sys::lzc_clone(c.as_ptr(), o.as_ptr(), props.as_ptr()) };
        check("clone", name, rc)
    }

    fn snapshot(&self, name: &str) -> Result<(), ZfsError> {
        let mut snaps = NvList::new();
        snaps.add_boolean(&cstring(name)?);
        let mut errlist: *mut sys::nvlist_t = std::ptr::null_mut();
        // SAFETY: an owned list of one snapshot name, no properties, and
        // an out-pointer for the error list (freed below).
        let rc = unsafe { sys::lzc_snapshot(snaps.as_ptr(), std::ptr::null_mut(), &mut errlist) };
        drop_errlist(errlist);
        check("snapshot", name, rc)
    }

    fn destroy(&self, name: &str) -> Result<(), ZfsError> {
        if name.contains('@') {
            let mut snaps = NvList::new();
            snaps.add_boolean(&cstring(name)?);
            let mut errlist: *mut sys::nvlist_t = std::ptr::null_mut();
            // SAFETY: an owned list of one snapshot name, no deferral, and
            // an out-pointer for the error list (freed below).
            let rc = unsafe { sys::lzc_destroy_snaps(snaps.as_ptr(), 0, &mut errlist) };
            drop_errlist(errlist);
            return check("destroy", name, rc);
        }
        let c = cstring(name)?;
        // SAFETY: a NUL-terminated filesystem name.
        let rc = unsafe { sys::lzc_destroy(c.as_ptr()) };
        check("destroy", name, rc)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), ZfsError> {
        let (f, t) = (cstring(from)?, cstring(to)?);
        // SAFETY: two NUL-terminated names.
        let rc = unsafe { sys::lzc_rename(f.as_ptr(), t.as_ptr()) };
        check("rename", from, rc)
    }

    fn children(&self, name: &str) -> Result<Vec<String>, ZfsError> {
        self.names(name, CHILDREN)
    }

    fn snapshots(&self, name: &str) -> Result<Vec<String>, ZfsError> {
        self.names(name, SNAPSHOTS)
    }

    fn space(&self, name: &str) -> Result<Space, ZfsError> {
        let props = self.properties(name)?;
        let get = |key: &str| props.get(key).and_then(NvValue::as_u64).unwrap_or(0);
        Ok(Space {
            used: get("used"),
            referenced: get("referenced"),
            available: get("available"),
        })
    }

    fn mountpoint(&self, name: &str) -> Result<String, ZfsError> {
        match self.properties(name)?.remove("mountpoint") {
            Some(NvValue::Str(s)) => Ok(s),
            other => Err(ZfsError::Query {
                dataset: name.to_owned(),
                message: format!("mountpoint is {other:?}"),
            }),
        }
    }

    fn mount(&self, name: &str, target: &Path) -> Result<(), ZfsError> {
        // A legacy mountpoint is mounted like any other filesystem: the
        // dataset is the source and no `zfsutil` option is needed.
        mount(
            Some(name),
            target,
            Some("zfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|source| ZfsError::Mount {
            dataset: name.to_owned(),
            target: target.to_owned(),
            source,
        })
    }

    fn unmount(&self, target: &Path) -> Result<(), ZfsError> {
        loop {
            match umount2(target, MntFlags::empty()) {
                Ok(()) => continue,
                Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => return Ok(()),
                Err(source) => {
                    return Err(ZfsError::Unmount {
                        target: target.to_owned(),
                        source,
                    })
                }
            }
        }
    }

    fn is_mounted(&self, target: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let parent = target.parent().unwrap_or(target);
        match (std::fs::metadata(target), std::fs::metadata(parent)) {
            (Ok(t), Ok(p)) => t.dev() != p.dev(),
            _ => false,
        }
    }
}
