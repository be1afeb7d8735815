//! Pod bandwidth limits from the Kubernetes annotations
//! `kubernetes.io/ingress-bandwidth` and `kubernetes.io/egress-bandwidth`
//! (resource quantities in bits per second, such as `10M` or `1Gi`).
//!
//! CNI mode hands them to plugins with the `bandwidth` capability and, as
//! the kubelet does, refuses values outside 1 kbit/s to 1 Pbit/s
//! ([`CNI_RANGE`]). Built-in mode shapes them itself with a token bucket
//! (TBF) whose rate the kernel takes as 32-bit bytes per second without
//! the 64-bit extension, so it refuses values outside 1 kbit/s to 32 Gbit/s
//! ([`BUILTIN_RANGE`]); [`TokenBucket`] is the arithmetic of that qdisc.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub(crate) const INGRESS: &str = "kubernetes.io/ingress-bandwidth";
pub(crate) const EGRESS: &str = "kubernetes.io/egress-bandwidth";

/// The rates a mode accepts, in bits per second, and how an error says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    min: u64,
    max: u64,
    text: &'static str,
}

/// What the kubelet accepts, passed on to CNI plugins as it is.
pub(crate) const CNI_RANGE: Range = Range {
    min: 1_000,
    max: 1_000_000_000_000_000,
    text: "1k to 1P",
};

/// What built-in mode shapes: 32 Gbit/s is 4e9 bytes/s, still a `u32` in
/// the TBF parameters, and far above what a veth carries.
pub(crate) const BUILTIN_RANGE: Range = Range {
    min: 1_000,
    max: 32_000_000_000,
    text: "1k to 32G",
};

/// Rates in bits per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Bandwidth {
    pub ingress: Option<u64>,
    pub egress: Option<u64>,
}

/// The limits the annotations ask for; `Ok(None)` without any. The error
/// names the annotation.
pub(crate) fn from_annotations(
    annotations: &BTreeMap<String, String>,
    range: Range,
) -> Result<Option<Bandwidth>, String> {
    let rate = |key: &str| -> Result<Option<u64>, String> {
        let Some(text) = annotations.get(key) else {
            return Ok(None);
        };
        match parse_quantity(text.trim()) {
            Some(v) if (range.min..=range.max).contains(&v) => Ok(Some(v)),
            Some(v) => Err(format!("{key}: {v} bit/s is outside {}", range.text)),
            None => Err(format!("{key}: {text:?} is not a quantity such as 10M")),
        }
    };
    let b = Bandwidth {
        ingress: rate(INGRESS)?,
        egress: rate(EGRESS)?,
    };
    Ok((b.ingress.is_some() || b.egress.is_some()).then_some(b))
}

/// The least burst: a whole 64 KiB GSO packet must fit in the bucket, or
/// TBF splits it (and drops what is larger than the bucket outright).
const MIN_BURST: u64 = 64 << 10;
/// The burst covers this much time at the rate, so that timer slack (a
/// tick is 4 ms at HZ=250, 10 ms at HZ=100) does not keep the rate from
/// being reached on fast links.
const BURST_NS: u64 = 10_000_000;
/// How long a packet may wait in the queue beyond the burst, as the CNI
/// bandwidth plugin's 25 ms.
const LATENCY_NS: u64 = 25_000_000;
const NS_PER_SEC: u64 = 1_000_000_000;
/// The kernel's scheduler tick (`PSCHED_SHIFT`): 64 ns.
const PSCHED_TICK_NS: u64 = 64;

/// The parameters of one TBF qdisc, in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenBucket {
    /// Bytes per second.
    pub rate: u32,
    /// Bucket size in bytes: what passes at line speed after a pause.
    pub burst: u32,
    /// Queue length in bytes; more is dropped.
    pub limit: u32,
    /// The burst as the time it takes at the rate, in scheduler ticks (the
    /// legacy field; the kernel prefers the burst in bytes).
    pub buffer_ticks: u32,
}

impl TokenBucket {
    /// The bucket for a rate in bits per second within [`BUILTIN_RANGE`]:
    /// burst the larger of 64 KiB and 10 ms at the rate, queue 25 ms at
    /// the rate plus the burst.
    pub(crate) fn for_rate(bits_per_second: u64) -> Self {
        let rate = (bits_per_second / 8).clamp(1, u64::from(u32::MAX));
        let burst = (rate * BURST_NS / NS_PER_SEC).max(MIN_BURST);
        let limit = rate * LATENCY_NS / NS_PER_SEC + burst;
        let buffer_ticks = burst * NS_PER_SEC / rate / PSCHED_TICK_NS;
        let narrow = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Self {
            rate: narrow(rate),
            burst: narrow(burst),
            limit: narrow(limit),
            buffer_ticks: narrow(buffer_ticks),
        }
    }
}

/// A Kubernetes resource quantity as a whole number: decimal (`k`, `M`,
/// `G`, `T`, `P`, `E`) and binary (`Ki` ... `Ei`) suffixes, an optional
/// fraction (`1.5M`). Exponent forms and milli units are refused.
pub(crate) fn parse_quantity(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let factor: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut value = whole.checked_mul(factor)?;
    if !fraction.is_empty() {
        let digits: u32 = fraction.len().try_into().ok()?;
        let scale = 10u128.checked_pow(digits)?;
        let part: u128 = fraction.parse().ok()?;
        value = value.checked_add(part.checked_mul(factor)? / scale)?;
    }
    u64::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("10M"), Some(10_000_000));
        assert_eq!(parse_quantity("1Gi"), Some(1 << 30));
        assert_eq!(parse_quantity("1.5k"), Some(1_500));
        assert_eq!(parse_quantity("2500"), Some(2_500));
        for bad in ["", "M", "10m", "1e6", "ten", "1.2.3k", "-5M"] {
            assert_eq!(parse_quantity(bad), None, "{bad}");
        }
    }

    #[test]
    fn annotations_become_limits_or_a_named_error() {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(from_annotations(&map(&[]), CNI_RANGE), Ok(None));
        assert_eq!(
            from_annotations(&map(&[(INGRESS, "1M")]), BUILTIN_RANGE),
            Ok(Some(Bandwidth {
                ingress: Some(1_000_000),
                egress: None
            }))
        );
        let err = from_annotations(&map(&[(EGRESS, "fast")]), CNI_RANGE).unwrap_err();
        assert!(err.starts_with(EGRESS), "{err}");
        let err = from_annotations(&map(&[(INGRESS, "10")]), CNI_RANGE).unwrap_err();
        assert!(err.contains("outside 1k to 1P"), "{err}");
        // Built-in mode stops at 32 Gbit/s, CNI mode passes more on.
        let fast = map(&[(INGRESS, "40G")]);
        assert!(from_annotations(&fast, CNI_RANGE).is_ok());
        let err = from_annotations(&fast, BUILTIN_RANGE).unwrap_err();
        assert!(
            err.starts_with(INGRESS) && err.contains("1k to 32G"),
            "{err}"
        );
        for edge in ["1k", "32G"] {
            let ok = from_annotations(&map(&[(EGRESS, edge)]), BUILTIN_RANGE);
            assert!(matches!(ok, Ok(Some(_))), "{edge}: {ok:?}");
        }
        let err = from_annotations(&map(&[(EGRESS, "999")]), BUILTIN_RANGE).unwrap_err();
        assert!(err.starts_with(EGRESS), "{err}");
    }

    #[test]
    fn more_quantities() {
        assert_eq!(parse_quantity("500k"), Some(500_000));
        assert_eq!(parse_quantity("1Ki"), Some(1_024));
        assert_eq!(parse_quantity("3Mi"), Some(3 << 20));
        assert_eq!(parse_quantity("2T"), Some(2_000_000_000_000));
        assert_eq!(parse_quantity("1Pi"), Some(1 << 50));
        assert_eq!(parse_quantity("2E"), Some(2_000_000_000_000_000_000));
        assert_eq!(parse_quantity("0.5G"), Some(500_000_000));
        assert_eq!(parse_quantity(".5k"), Some(500));
        // Beyond u64, and suffixes Kubernetes does not have.
        for bad in ["16Ei", "20E", "1K", "1Kb", "1 M", "1M ", "."] {
            assert_eq!(parse_quantity(bad), None, "{bad}");
        }
    }

    #[test]
    fn token_buckets() {
        // 1 Mbit/s: 125 kB/s, the 64 KiB floor, 25 ms of queue on top.
        let slow = TokenBucket::for_rate(1_000_000);
        assert_eq!(slow.rate, 125_000);
        assert_eq!(slow.burst, 65_536);
        assert_eq!(slow.limit, 3_125 + 65_536);
        // 65536 bytes at 125000 B/s is 524.288 ms, in 64 ns ticks.
        assert_eq!(slow.buffer_ticks, 8_192_000);
        // 10 Gbit/s: 10 ms at the rate beats the floor.
        let fast = TokenBucket::for_rate(10_000_000_000);
        assert_eq!(fast.rate, 1_250_000_000);
        assert_eq!(fast.burst, 12_500_000);
        assert_eq!(fast.limit, 31_250_000 + 12_500_000);
        assert_eq!(fast.buffer_ticks, 156_250);
        // The top of the built-in range still fits the 32-bit fields.
        let top = TokenBucket::for_rate(BUILTIN_RANGE.max);
        assert_eq!(top.rate, 4_000_000_000);
        assert_eq!(top.burst, 40_000_000);
        assert_eq!(top.limit, 140_000_000);
        // The bottom: 125 B/s, so the floor burst lasts over eight minutes.
        let bottom = TokenBucket::for_rate(BUILTIN_RANGE.min);
        assert_eq!(bottom.rate, 125);
        assert_eq!(bottom.burst, 65_536);
        assert_eq!(bottom.buffer_ticks, u32::MAX);
    }
}
