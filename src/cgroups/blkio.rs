//! Block I/O per device of one cgroup: v2's `io.stat`
//! (`8:0 rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=..`) and v1's
//! `blkio.throttle.io_service_bytes` / `io_serviced`
//! (`8:0 Read 4096`, ..., and a closing `Total` line).

use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DeviceIo {
    pub major: u32,
    pub minor: u32,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

impl DeviceIo {
    /// `/dev/<name>` of the block device, from sysfs; empty when unknown.
    pub(crate) fn device_name(&self) -> String {
        let uevent = format!("/sys/dev/block/{}:{}/uevent", self.major, self.minor);
        std::fs::read_to_string(uevent)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("DEVNAME="))
                    .map(|n| format!("/dev/{n}"))
            })
            .unwrap_or_default()
    }
}

fn device(key: &str) -> Option<(u32, u32)> {
    let (major, minor) = key.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Parses v2's `io.stat`.
pub(crate) fn parse_v2(text: &str) -> Vec<DeviceIo> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (major, minor) = device(words.next()?)?;
            let mut io = DeviceIo {
                major,
                minor,
                ..Default::default()
            };
            for word in words {
                let Some((key, value)) = word.split_once('=') else {
                    continue;
                };
                let value: u64 = value.parse().unwrap_or(0);
                match key {
                    "rbytes" => io.read_bytes = value,
                    "wbytes" => io.write_bytes = value,
                    "rios" => io.reads = value,
                    "wios" => io.writes = value,
                    _ => {}
                }
            }
            Some(io)
        })
        .collect()
}

/// Parses v1's `blkio.throttle.io_service_bytes` and `io_serviced`.
pub(crate) fn parse_v1(bytes: &str, serviced: &str) -> Vec<DeviceIo> {
    let mut by_device: BTreeMap<(u32, u32), DeviceIo> = BTreeMap::new();
    for (text, is_bytes) in [(bytes, true), (serviced, false)] {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(dev), Some(op), Some(value)) = (words.next(), words.next(), words.next())
            else {
                continue;
            };
            let (Some((major, minor)), Ok(value)) = (device(dev), value.parse::<u64>()) else {
                continue;
            };
            let io = by_device.entry((major, minor)).or_insert(DeviceIo {
                major,
                minor,
                ..Default::default()
            });
            match (op, is_bytes) {
                ("Read", true) => io.read_bytes = value,
                ("Write", true) => io.write_bytes = value,
                ("Read", false) => io.reads = value,
                ("Write", false) => io.writes = value,
                _ => {}
            }
        }
    }
    by_device.into_values().collect()
}

pub(crate) fn read_v2(dir: &Path) -> Vec<DeviceIo> {
    std::fs::read_to_string(dir.join("io.stat"))
        .map(|t| parse_v2(&t))
        .unwrap_or_default()
}

pub(crate) fn read_v1(dir: &Path) -> Vec<DeviceIo> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    parse_v1(
        &read("blkio.throttle.io_service_bytes"),
        &read("blkio.throttle.io_serviced"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v2_io_stat() {
        let io = parse_v2(
            "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:0 rbytes=7 wbytes=0 rios=3 wios=0\n",
        );
        assert_eq!(
            io[0],
            DeviceIo {
                major: 254,
                minor: 0,
                read_bytes: 4096,
                write_bytes: 8192,
                reads: 1,
                writes: 2
            }
        );
        assert_eq!((io[1].major, io[1].reads), (8, 3));
    }

    #[test]
    fn parses_v1_blkio_files() {
        let bytes = "254:0 Read 4096\n254:0 Write 512\n254:0 Sync 0\n254:0 Async 4608\n254:0 Total 4608\nTotal 4608\n";
        let serviced = "254:0 Read 2\n254:0 Write 1\n254:0 Total 3\nTotal 3\n";
        assert_eq!(
            parse_v1(bytes, serviced),
            [DeviceIo {
                major: 254,
                minor: 0,
                read_bytes: 4096,
                write_bytes: 512,
                reads: 2,
                writes: 1
            }]
        );
        assert!(parse_v1("", "").is_empty());
    }
}
