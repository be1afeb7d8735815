//! Mount targets resolved inside the container, never on the host.
//!
//! liblxc creates a missing mount target (`create=dir`/`create=file`) with
//! `mkdir -p` and `mknod` on the host path `<rootfs mount>/<target>`, before
//! the container's root is its root: an image symlink such as
//! `etc -> /somewhere` would make it create directories and files on the
//! node. So the daemon places every target itself and hands liblxc a path
//! with no symlink left in it:
//!
//! - The target is walked one component at a time through what will back
//!   it when liblxc mounts it: the root filesystem, or the source of an
//!   earlier mount whose target covers it (nested volumes). Each step opens
//!   one name in a directory fd with `O_NOFOLLOW`; a symlink is read and
//!   interpreted as the container would (absolute links restart at the
//!   container's root, `..` never climbs above it), never followed on the
//!   host.
//! - Missing components are created in that backing directory (`mkdirat`,
//!   or an empty file for a file bind), owned by the pod's root when the pod
//!   has a user namespace.
//! - `/dev` is the fresh tmpfs liblxc mounts (autodev): nothing in it can
//!   be a planted symlink, so targets there keep liblxc's `create=`.
//!   `/proc` and `/sys` are the kernel's: nothing is created there, and only
//!   privileged containers may end up under them.
//!
//! liblxc's own mount helper refuses a target path that turned into a
//! symlink after this walk (another container sharing a volume could race
//! it), and nothing tells it to create anything outside `/dev`, so a lost
//! race fails the start instead of writing on the host.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};

/// How many symlinks one target may pass through (the kernel's limit).
const MAX_SYMLINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub(crate) enum MountpointError {
    #[error("mount target {target}: more than {MAX_SYMLINKS} symlinks")]
    TooManySymlinks { target: String },
    #[error("mount target {target}: /{at} is not a directory")]
    NotADirectory { target: String, at: String },
    #[error("mount target {target}: it lies under the file mounted at /{at}")]
    UnderFileMount { target: String, at: String },
    #[error("mount target {target} resolves to /{resolved}, {why}")]
    Forbidden {
        target: String,
        resolved: String,
        why: &'static str,
    },
    #[error("path {path} does not exist in {root}")]
    Missing { path: String, root: PathBuf },
    #[error("cannot {op} /{at} for mount target {target}: {source}")]
    Io {
        op: &'static str,
        target: String,
        at: String,
        #[source]
        source: Errno,
    },
}

/// Where liblxc will mount, relative to the container's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placed {
    /// Relative path without symlinks, `..` or empty components.
    pub target: String,
    /// The target is in the autodev tmpfs: liblxc must create it
    /// (`create=dir`/`create=file`), which is safe there.
    pub create: bool,
}

/// What a part of the container's tree is backed by when a mount is made.
#[derive(Debug, Clone)]
enum Backing {
    /// A host directory (the root filesystem, or a directory volume).
    Dir(PathBuf),
    /// A file bind: nothing can lie beneath it.
    File,
    /// liblxc's autodev tmpfs.
    DevTmpfs,
    /// procfs or sysfs.
    Kernel,
}

/// The container's mount tree as liblxc will build it, one mount at a time
/// in the order of the config.
#[derive(Debug)]
pub(crate) struct MountTree {
    /// (container path components, backing), in mount order; later entries
    /// cover earlier ones at the same or a shorter path.
    layers: Vec<(Vec<OsString>, Backing)>,
    /// The owner of created entries (the pod's root in a user namespace).
    owner: Option<(u32, u32)>,
    privileged: bool,
}

impl MountTree {
    /// The tree of a root filesystem at `rootfs` (a host directory), with
    /// liblxc's `/proc`, `/sys` and autodev `/dev` on it.
    pub(crate) fn new(rootfs: &Path, owner: Option<(u32, u32)>, privileged: bool) -> Self {
        let layers = vec![
            (Vec::new(), Backing::Dir(rootfs.to_owned())),
            (vec![OsString::from("proc")], Backing::Kernel),
            (vec![OsString::from("sys")], Backing::Kernel),
            (vec![OsString::from("dev")], Backing::DevTmpfs),
        ];
        MountTree {
            layers,
            owner,
            privileged,
        }
    }

    /// Places a bind mount of `source` at `target` (absolute, as requested):
    /// resolves it inside the container, creates what is missing in the
    /// backing directory, and records the mount so later targets beneath it
    /// resolve into `source`.
    pub(crate) fn place(
        &mut self,
        target: &str,
        source: &Path,
        file: bool,
    ) -> Result<Placed, MountpointError> {
        let (resolved, backing) = self.walk(target, Some(file))?;
        let text = join(&resolved);
        if !self.privileged {
            let first = resolved.first().map(|c| c.as_bytes());
            let why = match first {
                None => Some("the container's root"),
                Some(b"proc") | Some(b"sys") => Some("under /proc or /sys"),
                Some(b"dev") if resolved.len() == 1 => Some("the container's /dev"),
                _ => None,
            };
            if let Some(why) = why {
                return Err(MountpointError::Forbidden {
                    target: target.to_owned(),
                    resolved: text,
                    why,
                });
            }
        }
        let create = matches!(backing, Backing::DevTmpfs);
        let layer = if file {
            Backing::File
        } else {
            Backing::Dir(source.to_owned())
        };
        self.layers.push((resolved, layer));
        Ok(Placed {
            target: text,
            create,
        })
    }

    /// The deepest (latest, on ties) layer whose path is a prefix of `path`,
    /// and the rest of `path` below it.
    fn backing_of<'p>(&self, path: &'p [OsString]) -> (&Backing, &'p [OsString], String) {
        let (prefix, backing) = self
            .layers
            .iter()
            .rev()
            .filter(|(p, _)| path.starts_with(p))
            .max_by_key(|(p, _)| p.len())
            .expect("the root layer is a prefix of every path");
        (backing, &path[prefix.len()..], join(prefix))
    }

    /// Resolves `target` component by component. `create`: `Some(file)`
    /// creates what is missing (the last component as a file when `file`),
    /// `None` only resolves. Returns the resolved components and what backs
    /// the last one.
    fn walk(
        &self,
        target: &str,
        create: Option<bool>,
    ) -> Result<(Vec<OsString>, Backing), MountpointError> {
        let mut pending: Vec<OsString> = split(OsStr::from_bytes(target.as_bytes()));
        pending.reverse();
        let mut resolved: Vec<OsString> = Vec::new();
        let mut links = 0;
        let io = |op, at: &[OsString], source| MountpointError::Io {
            op,
            target: target.to_owned(),
            at: join(at),
            source,
        };
        while let Some(name) = pending.pop() {
            if name == ".." {
                resolved.pop();
                continue;
            }
            // A mount point: the mount covers whatever the layer beneath
            // has there (liblxc mounts on real directories only).
            resolved.push(name);
            if self.layers.iter().any(|(p, _)| *p == resolved) {
                continue;
            }
            let name = resolved.pop().expect("just pushed");
            let (backing, below, at) = self.backing_of(&resolved);
            let dir_root = match backing {
                Backing::Dir(root) => root.clone(),
                Backing::File => {
                    return Err(MountpointError::UnderFileMount {
                        target: target.to_owned(),
                        at,
                    })
                }
                // Fresh tmpfs, or the kernel's tree: nothing to look at now.
                Backing::DevTmpfs | Backing::Kernel => {
                    resolved.push(name);
                    continue;
                }
            };
            let parent = open_walk(&dir_root, below).map_err(|e| io("open", &resolved, e))?;
            let last = pending.is_empty();
            match entry_type(parent.as_fd(), &name).map_err(|e| io("inspect", &resolved, e))? {
                Some(SFlag::S_IFLNK) => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(MountpointError::TooManySymlinks {
                            target: target.to_owned(),
                        });
                    }
                    let link = readlinkat(parent.as_fd(), name.as_os_str())
                        .map_err(|e| io("read the symlink", &resolved, e))?;
                    if link.as_bytes().starts_with(b"/") {
                        resolved.clear();
                    }
                    let mut parts = split(&link);
                    parts.reverse();
                    pending.extend(parts);
                }
                Some(SFlag::S_IFDIR) => resolved.push(name),
                Some(_) if last && create == Some(true) => resolved.push(name),
                Some(_) => {
                    resolved.push(name);
                    return Err(MountpointError::NotADirectory {
                        target: target.to_owned(),
                        at: join(&resolved),
                    });
                }
                None => {
                    let Some(file) = create else {
                        resolved.push(name);
                        return Err(MountpointError::Missing {
                            path: join(&resolved),
                            root: dir_root,
                        });
                    };
                    let as_file = file && last;
                    self.create(parent.as_fd(), &name, as_file)
                        .map_err(|e| io("create", &resolved, e))?;
                    resolved.push(name);
                }
            }
        }
        let backing = self.backing_of(&resolved).0.clone();
        Ok((resolved, backing))
    }

    fn create(&self, parent: BorrowedFd<'_>, name: &OsStr, file: bool) -> Result<(), Errno> {
        if file {
            openat(
                parent,
                name,
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )?;
        } else {
            mkdirat(parent, name, Mode::from_bits_truncate(0o755))?;
        }
        if let Some((uid, gid)) = self.owner {
            nix::unistd::fchownat(
                parent,
                name,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        Ok(())
    }
}

/// The host path of `rel` (relative, may hold symlinks) inside the tree at
/// `root`, with every symlink interpreted inside `root`: for sub-paths of
/// image volumes. The path must exist.
pub(crate) fn resolve_in_root(root: &Path, rel: &str) -> Result<PathBuf, MountpointError> {
    let tree = MountTree {
        layers: vec![(Vec::new(), Backing::Dir(root.to_owned()))],
        owner: None,
        privileged: true,
    };
    let (resolved, _) = tree.walk(rel, None)?;
    Ok(resolved.iter().fold(root.to_owned(), |p, c| p.join(c)))
}

/// Opens the directory `below` under `root` without following a symlink
/// anywhere below `root` (every component was already found to be a
/// directory by the walk).
fn open_walk(root: &Path, below: &[OsString]) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut fd = open_owned(None, root.as_os_str(), flags)?;
    for name in below {
        fd = open_owned(Some(fd.as_fd()), name, flags | OFlag::O_NOFOLLOW)?;
    }
    Ok(fd)
}

fn open_owned(dir: Option<BorrowedFd<'_>>, name: &OsStr, flags: OFlag) -> Result<OwnedFd, Errno> {
    match dir {
        Some(d) => openat(d, name, flags, Mode::empty()),
        None => nix::fcntl::open(name, flags, Mode::empty()),
    }
}

/// The type of `name` in `dir` without following it; `None` when missing.
fn entry_type(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<SFlag>, Errno> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The non-empty, non-`.` components of a path.
fn split(path: &OsStr) -> Vec<OsString> {
    path.as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsString::from_vec(c.to_vec()))
        .collect()
}

fn join(parts: &[OsString]) -> String {
    parts
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Fixture {
        _dir: tempfile::TempDir,
        rootfs: PathBuf,
        outside: PathBuf,
        volume: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        let outside = dir.path().join("outside");
        let volume = dir.path().join("volume");
        for d in [&rootfs, &outside, &volume] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::create_dir_all(rootfs.join("usr/share")).unwrap();
        std::fs::write(rootfs.join("usr/file"), b"x").unwrap();
        Fixture {
            _dir: dir,
            rootfs,
            outside,
            volume,
        }
    }

    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn plain_targets_are_created_in_the_rootfs() {
        let f = fixture();
        let mut tree = MountTree::new(&f.rootfs, None, false);
        let p = tree.place("/data/sub", &f.volume, false).unwrap();
        assert_eq!(
            p,
            Placed {
                target: "data/sub".into(),
                create: false
            }
        );
        assert!(f.rootfs.join("data/sub").is_dir());
        let p = tree.place("/etc/hosts", Path::new("/x"), true).unwrap();
        assert_eq!(p.target, "etc/hosts");
        assert!(f.rootfs.join("etc/hosts").is_file());
        // Existing directories are used as they are.
        assert_eq!(
            tree.place("//usr/./share/", &f.volume, false)
                .unwrap()
                .target,
            "usr/share"
        );
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root_not_on_the_host() {
        let f = fixture();
        // etc -> <host dir outside the rootfs>, as a hostile image would.
        symlink(&f.outside, f.rootfs.join("etc")).unwrap();
        symlink("/", f.rootfs.join("up")).unwrap();
        let mut tree = MountTree::new(&f.rootfs, None, false);
        let p = tree.place("/etc/hosts", Path::new("/x"), true).unwrap();
        let outside_rel = f.outside.strip_prefix("/").unwrap();
        assert_eq!(p.target, format!("{}/hosts", outside_rel.display()));
        assert!(f.rootfs.join(outside_rel).join("hosts").is_file());
        assert_eq!(count(&f.outside), 0, "nothing created on the host");
        let p = tree.place("/up/up/data", &f.volume, false).unwrap();
        assert_eq!(p.target, "data");
    }

    #[test]
    fn dotdot_in_a_symlink_never_leaves_the_root() {
        let f = fixture();
        symlink("../../../../outside", f.rootfs.join("escape")).unwrap();
        let mut tree = MountTree::new(&f.rootfs, None, false);
        let p = tree.place("/escape/x", &f.volume, false).unwrap();
        assert_eq!(p.target, "outside/x");
        assert!(f.rootfs.join("outside/x").is_dir());
        assert_eq!(count(&f.outside), 0);
    }

    #[test]
    fn symlink_loops_are_refused() {
        let f = fixture();
        symlink("b", f.rootfs.join("a")).unwrap();
        symlink("a", f.rootfs.join("b")).unwrap();
        let mut tree = MountTree::new(&f.rootfs, None, false);
        assert!(matches!(
            tree.place("/a/x", &f.volume, false),
            Err(MountpointError::TooManySymlinks { .. })
        ));
    }

    #[test]
    fn nested_targets_are_created_in_the_covering_volume_without_following_its_links() {
        let f = fixture();
        // A symlink planted in a shared volume by an earlier container.
        symlink(&f.outside, f.volume.join("planted")).unwrap();
        let mut tree = MountTree::new(&f.rootfs, None, false);
        tree.place("/data", &f.volume, false).unwrap();
        let p = tree.place("/data/inner", Path::new("/y"), false).unwrap();
        assert_eq!(p.target, "data/inner");
        assert!(f.volume.join("inner").is_dir(), "created in the volume");
        assert!(!f.rootfs.join("data/inner").exists());
        // Through the planted link: resolved as the container sees it.
        let p = tree
            .place("/data/planted/x", Path::new("/y"), true)
            .unwrap();
        let outside_rel = f.outside.strip_prefix("/").unwrap();
        assert_eq!(p.target, format!("{}/x", outside_rel.display()));
        assert_eq!(count(&f.outside), 0);
    }

    #[test]
    fn targets_under_a_file_mount_or_a_file_are_refused() {
        let f = fixture();
        let mut tree = MountTree::new(&f.rootfs, None, false);
        tree.place("/etc/conf", Path::new("/f"), true).unwrap();
        assert!(matches!(
            tree.place("/etc/conf/x", &f.volume, false),
            Err(MountpointError::UnderFileMount { .. })
        ));
        assert!(matches!(
            tree.place("/usr/file/x", &f.volume, false),
            Err(MountpointError::NotADirectory { .. })
        ));
    }

    #[test]
    fn dev_targets_are_left_to_liblxc_and_kernel_trees_are_refused() {
        let f = fixture();
        let mut tree = MountTree::new(&f.rootfs, None, false);
        let p = tree
            .place("/dev/termination-log", Path::new("/f"), true)
            .unwrap();
        assert_eq!(
            p,
            Placed {
                target: "dev/termination-log".into(),
                create: true
            }
        );
        assert!(!f.rootfs.join("dev").exists());
        symlink("/proc/sys", f.rootfs.join("knobs")).unwrap();
        for t in ["/knobs/x", "/dev", "/", "/sys/x"] {
            assert!(
                matches!(
                    tree.place(t, &f.volume, false),
                    Err(MountpointError::Forbidden { .. })
                ),
                "{t}"
            );
        }
        let mut privileged = MountTree::new(&f.rootfs, None, true);
        assert_eq!(
            privileged.place("/knobs/x", &f.volume, false).unwrap(),
            Placed {
                target: "proc/sys/x".into(),
                create: false
            }
        );
    }

    #[test]
    fn sub_paths_resolve_inside_their_root() {
        let f = fixture();
        symlink("/usr/share", f.rootfs.join("link")).unwrap();
        assert_eq!(
            resolve_in_root(&f.rootfs, "link").unwrap(),
            f.rootfs.join("usr/share")
        );
        symlink(&f.outside, f.rootfs.join("out")).unwrap();
        assert!(matches!(
            resolve_in_root(&f.rootfs, "out"),
            Err(MountpointError::Missing { .. })
        ));
        assert_eq!(resolve_in_root(&f.rootfs, "").unwrap(), f.rootfs);
    }
}
