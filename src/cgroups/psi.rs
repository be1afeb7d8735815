//! Pressure stall information: the `cpu.pressure`, `memory.pressure` and
//! `io.pressure` files of a cgroup v2 directory (also present in the
//! unified hierarchy of a hybrid host, where the v1 controllers account
//! everything else).
//!
//! Each file has a `some` line and, except for `cpu.pressure` on older
//! kernels, a `full` line:
//! `some avg10=0.12 avg60=0.05 avg300=0.01 total=123456` (total in
//! microseconds, the averages in percent).

use std::path::Path;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct PsiLine {
    pub total_us: u64,
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Psi {
    pub some: PsiLine,
    pub full: Option<PsiLine>,
}

/// The three pressure files of one cgroup; `None` where missing (no PSI in
/// the kernel, or the cgroup is gone).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Pressure {
    pub cpu: Option<Psi>,
    pub memory: Option<Psi>,
    pub io: Option<Psi>,
}

impl Pressure {
    pub(crate) fn read(dir: &Path) -> Self {
        let read = |file: &str| {
            std::fs::read_to_string(dir.join(file))
                .ok()
                .and_then(|t| parse(&t))
        };
        Self {
            cpu: read("cpu.pressure"),
            memory: read("memory.pressure"),
            io: read("io.pressure"),
        }
    }
}

/// Parses a pressure file; `None` without a valid `some` line.
pub(crate) fn parse(text: &str) -> Option<Psi> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let slot = match words.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        let mut out = PsiLine::default();
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            match key {
                "avg10" => out.avg10 = value.parse().ok()?,
                "avg60" => out.avg60 = value.parse().ok()?,
                "avg300" => out.avg300 = value.parse().ok()?,
                "total" => out.total_us = value.parse().ok()?,
                _ => {}
            }
        }
        *slot = Some(out);
    }
    Some(Psi { some: some?, full })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_lines() {
        let psi = parse(
            "some avg10=5.11 avg60=12.58 avg300=11.29 total=8624447271\n\
             full avg10=0.00 avg60=0.50 avg300=0.25 total=42\n",
        )
        .unwrap();
        assert_eq!(psi.some.total_us, 8_624_447_271);
        assert_eq!(psi.some.avg10, 5.11);
        assert_eq!(psi.some.avg300, 11.29);
        let full = psi.full.unwrap();
        assert_eq!((full.total_us, full.avg60), (42, 0.5));
    }

    #[test]
    fn full_is_optional_and_garbage_is_none() {
        let psi = parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n").unwrap();
        assert_eq!(psi.full, None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("some avg10=x total=1\n"), None);
    }

    #[test]
    fn reads_a_cgroup_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("io.pressure"),
            "some avg10=1.00 avg60=0.00 avg300=0.00 total=9\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=3\n",
        )
        .unwrap();
        let p = Pressure::read(dir.path());
        assert_eq!(p.cpu, None);
        assert_eq!(p.io.unwrap().full.unwrap().total_us, 3);
    }
}
