//! Just enough of `/proc/self/mountinfo` to find a mount point and its
//! propagation.

use std::io;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub mount_point: PathBuf,
    /// The optional fields, e.g. `shared:1`, `master:2`.
    pub tags: Vec<String>,
}

/// The calling thread's mounts. (`self` is the thread group leader, but
/// threads share one mount namespace here: nothing unshares CLONE_NEWNS.)
pub(crate) fn mounts() -> io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

pub(crate) fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let mount_point = fields.nth(4)?;
            let tags = fields
                .skip(1)
                .take_while(|f| *f != "-")
                .map(str::to_owned)
                .collect();
            Some(Mount {
                mount_point: PathBuf::from(unescape(mount_point)),
                tags,
            })
        })
        .collect()
}

/// The kernel escapes space, tab, newline and backslash as `\ooo`.
pub(crate) fn unescape(field: &str) -> String {
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
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn parses_mount_point_and_tags() {
        let text = "\
27 1 254:0 / / rw,relatime shared:1 master:3 - ext4 /dev/vda rw
43 42 0:39 /ns /run/my\\040dir/ns rw,relatime - tmpfs tmpfs rw
";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, PathBuf::from("/"));
        assert_eq!(m[0].tags, ["shared:1", "master:3"]);
        assert_eq!(m[1].mount_point, PathBuf::from("/run/my dir/ns"));
        assert!(m[1].tags.is_empty());
    }

    #[test]
    fn reads_this_process() {
        assert!(mounts()
            .unwrap()
            .iter()
            .any(|m| m.mount_point == Path::new("/")));
    }
}
