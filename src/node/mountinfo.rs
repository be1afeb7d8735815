//! The one parser of `/proc/<pid>/mountinfo` (proc(5)), shared by the
//! cgroup hierarchy lookup, the namespace pins and the census.
//!
//! A line is `id parent major:minor root mount-point mount-options
//! [optional fields...] - fs-type source super-options`; the optional
//! fields (`shared:N`, `master:N`, ...) end at the lone `-`. The kernel
//! writes space, tab, newline and backslash in a field as `\ooo` octal
//! escapes, so a path field is decoded before it means anything; paths are
//! kept as bytes (`PathBuf`), not forced through UTF-8. A line that does not
//! have this shape is skipped: every caller looks for particular mounts and
//! is better served by the rest of the table than by no table.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// One line of mountinfo, its path fields decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_id: u32,
    pub parent_id: u32,
    /// The device of the superblock: bind mounts of one filesystem share it.
    pub major: u32,
    pub minor: u32,
    /// The directory of the filesystem this mount shows (`/` unless it is a
    /// bind mount of a subdirectory, or a cgroup namespace narrows it).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`, `nosuid`, `relatime`, ...).
    pub mount_options: Vec<String>,
    /// Propagation tags, e.g. `shared:1`, `master:2`.
    pub optional_fields: Vec<String>,
    pub fs_type: String,
    /// The mounted thing as the filesystem names it (a device, `tmpfs`, ...).
    pub source: String,
    /// Per-superblock options; a v1 cgroup mount lists its controllers here.
    pub super_options: Vec<String>,
}

impl Mount {
    /// One mountinfo line; `None` when it does not have the kernel's shape.
    pub fn parse_line(line: &str) -> Option<Mount> {
        let fields: Vec<&str> = line.split(' ').collect();
        // The separator comes after the six fixed fields; a `-` earlier is
        // a field's value (a mount point named `-`, say).
        let sep = 6 + fields.get(6..)?.iter().position(|f| *f == "-")?;
        let [mount_id, parent_id, dev, root, mount_point, mount_options] = fields[..6] else {
            return None;
        };
        let [fs_type, source, super_options, ..] = fields[sep + 1..] else {
            return None;
        };
        let (major, minor) = dev.split_once(':')?;
        Some(Mount {
            mount_id: mount_id.parse().ok()?,
            parent_id: parent_id.parse().ok()?,
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
            root: unescape_path(root),
            mount_point: unescape_path(mount_point),
            mount_options: options(mount_options),
            optional_fields: fields[6..sep].iter().map(|f| (*f).to_owned()).collect(),
            fs_type: fs_type.to_owned(),
            source: String::from_utf8_lossy(&unescape(source)).into_owned(),
            super_options: options(super_options),
        })
    }

    /// Whether `option` is one of the superblock options.
    pub fn has_super_option(&self, option: &str) -> bool {
        self.super_options.iter().any(|o| o == option)
    }
}

/// Every well-formed line of a mountinfo text, in order.
pub(crate) fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(Mount::parse_line).collect()
}

/// The mounts of this process's mount namespace. (`self` is the thread
/// group leader, but pvecri's threads share one mount namespace: nothing
/// unshares CLONE_NEWNS on a thread that reads this.)
pub(crate) fn read_self() -> io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

fn options(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect()
}

fn unescape_path(field: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

/// Decodes the kernel's `\ooo` escapes; a backslash not followed by three
/// octal digits is kept as it is.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if b[i] == b'\\' => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn parses_every_field() {
        let m = Mount::parse_line(
            "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!(
            m,
            Mount {
                mount_id: 36,
                parent_id: 35,
                major: 98,
                minor: 0,
                root: "/mnt1".into(),
                mount_point: "/mnt2".into(),
                mount_options: vec!["rw".into(), "noatime".into()],
                optional_fields: vec!["master:1".into()],
                fs_type: "ext3".into(),
                source: "/dev/root".into(),
                super_options: vec!["rw".into(), "errors=continue".into()],
            }
        );
        assert!(m.has_super_option("errors=continue"));
        assert!(!m.has_super_option("errors"));
    }

    #[test]
    fn optional_fields_end_at_the_separator() {
        let text = "\
27 1 254:0 / / rw,relatime shared:1 master:3 propagate_from:2 - ext4 /dev/vda rw
43 42 0:39 /ns /run/ns rw,relatime - tmpfs tmpfs rw
";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0].optional_fields,
            ["shared:1", "master:3", "propagate_from:2"]
        );
        assert_eq!(m[0].fs_type, "ext4");
        assert!(m[1].optional_fields.is_empty());
        assert_eq!(m[1].root, Path::new("/ns"));
        assert_eq!(m[1].fs_type, "tmpfs");
    }

    #[test]
    fn path_fields_are_unescaped() {
        // Space, tab, newline and backslash, as the kernel writes them.
        let m = Mount::parse_line(
            "43 42 0:39 /a\\040b /run/my\\011dir/x\\012y\\134z rw - tmpfs my\\040src rw",
        )
        .unwrap();
        assert_eq!(m.root, Path::new("/a b"));
        assert_eq!(m.mount_point, Path::new("/run/my\tdir/x\ny\\z"));
        assert_eq!(m.source, "my src");
        // Not an escape: kept as written.
        let m = Mount::parse_line("1 0 0:1 / /a\\09\\4 rw - tmpfs t rw").unwrap();
        assert_eq!(m.mount_point, Path::new("/a\\09\\4"));
    }

    #[test]
    fn paths_need_not_be_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let m = Mount::parse_line("1 0 0:1 / /x\\377 rw - tmpfs t rw").unwrap();
        assert_eq!(m.mount_point.as_os_str().as_bytes(), b"/x\xff");
    }

    #[test]
    fn a_dash_before_the_optional_fields_is_a_value() {
        let m = Mount::parse_line("1 0 0:1 / - rw shared:4 - tmpfs t rw").unwrap();
        assert_eq!(m.mount_point, Path::new("-"));
        assert_eq!(m.optional_fields, ["shared:4"]);
        assert_eq!(m.fs_type, "tmpfs");
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw

garbage
27 1 254:0 / / rw shared:1 ext4 /dev/vda rw
27 1 254:0 / / rw - ext4 /dev/vda
x 1 254:0 / / rw - ext4 /dev/vda rw
27 1 254 / / rw - ext4 /dev/vda rw
28 1 0:5 / /ok rw - tmpfs tmpfs rw
";
        let points: Vec<_> = parse(text).into_iter().map(|m| m.mount_point).collect();
        assert_eq!(points, [PathBuf::from("/"), PathBuf::from("/ok")]);
    }

    #[test]
    fn reads_this_process() {
        assert!(read_self()
            .unwrap()
            .iter()
            .any(|m| m.mount_point == Path::new("/")));
    }
}
