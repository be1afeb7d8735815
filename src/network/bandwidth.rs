//! Pod bandwidth limits from the Kubernetes annotations
//! `kubernetes.io/ingress-bandwidth` and `kubernetes.io/egress-bandwidth`
//! (resource quantities in bits per second, such as `10M` or `1Gi`), for
//! CNI plugins with the `bandwidth` capability. As the kubelet does, values
//! outside 1 kbit/s to 1 Pbit/s are refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub(crate) const INGRESS: &str = "kubernetes.io/ingress-bandwidth";
pub(crate) const EGRESS: &str = "kubernetes.io/egress-bandwidth";

const MIN: u64 = 1_000;
const MAX: u64 = 1_000_000_000_000_000;

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
) -> Result<Option<Bandwidth>, String> {
    let rate = |key: &str| -> Result<Option<u64>, String> {
        let Some(text) = annotations.get(key) else {
            return Ok(None);
        };
        match parse_quantity(text.trim()) {
            Some(v) if (MIN..=MAX).contains(&v) => Ok(Some(v)),
            Some(v) => Err(format!("{key}: {v} bit/s is outside 1k to 1P")),
            None => Err(format!("{key}: {text:?} is not a quantity such as 10M")),
        }
    };
    let b = Bandwidth {
        ingress: rate(INGRESS)?,
        egress: rate(EGRESS)?,
    };
    Ok((b.ingress.is_some() || b.egress.is_some()).then_some(b))
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
        assert_eq!(from_annotations(&map(&[])), Ok(None));
        assert_eq!(
            from_annotations(&map(&[(INGRESS, "1M")])),
            Ok(Some(Bandwidth {
                ingress: Some(1_000_000),
                egress: None
            }))
        );
        let err = from_annotations(&map(&[(EGRESS, "fast")])).unwrap_err();
        assert!(err.starts_with(EGRESS), "{err}");
        let err = from_annotations(&map(&[(INGRESS, "10")])).unwrap_err();
        assert!(err.contains("outside"), "{err}");
    }
}
