//! Fully-qualified CDI device names: `vendor/class=device`.
//!
//! The rules are the CDI spec's and its reference parser's: vendor and
//! class start with a letter and end with a letter or digit, with letters,
//! digits, `_`, `-` and `.` between; a device name may also start with a
//! digit and has `:` among its middle characters. The lengths are capped
//! (the spec's 63 for the class, 253 for the vendor's DNS name, and the
//! same for a device name), so a name is always short and printable.

use std::fmt;

/// The longest vendor (a DNS subdomain).
const MAX_VENDOR: usize = 253;
/// The longest class (the name segment of a kind).
const MAX_CLASS: usize = 63;
/// The longest device name (the spec sets none; this is pvecri's).
const MAX_DEVICE: usize = 253;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NameError {
    #[error("{0:?} is not a fully-qualified CDI device name (vendor/class=device)")]
    Unqualified(String),
    #[error("{name:?}: the {part} {value:?} {why}")]
    BadPart {
        name: String,
        part: &'static str,
        value: String,
        why: String,
    },
    #[error("{0:?} is not a CDI kind (vendor/class)")]
    BadKind(String),
}

/// A valid `vendor/class=device`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct QualifiedName {
    vendor: String,
    class: String,
    device: String,
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}={}", self.vendor, self.class, self.device)
    }
}

/// Parses and checks a requested device name.
pub(crate) fn parse(name: &str) -> Result<QualifiedName, NameError> {
    let unqualified = || NameError::Unqualified(name.to_owned());
    let (kind, device) = name.split_once('=').ok_or_else(unqualified)?;
    let (vendor, class) = kind.split_once('/').ok_or_else(unqualified)?;
    if vendor.is_empty() || class.is_empty() || device.is_empty() {
        return Err(unqualified());
    }
    let bad = |part, value: &str, why: String| NameError::BadPart {
        name: name.to_owned(),
        part,
        value: value.to_owned(),
        why,
    };
    check_vendor_or_class(vendor, MAX_VENDOR).map_err(|why| bad("vendor", vendor, why))?;
    check_vendor_or_class(class, MAX_CLASS).map_err(|why| bad("class", class, why))?;
    check_device(device).map_err(|why| bad("device name", device, why))?;
    Ok(QualifiedName {
        vendor: vendor.to_owned(),
        class: class.to_owned(),
        device: device.to_owned(),
    })
}

/// Checks a spec's `kind` (`vendor/class`).
pub(crate) fn check_kind(kind: &str) -> Result<(), NameError> {
    let (vendor, class) = kind
        .split_once('/')
        .ok_or_else(|| NameError::BadKind(kind.to_owned()))?;
    if check_vendor_or_class(vendor, MAX_VENDOR).is_err()
        || check_vendor_or_class(class, MAX_CLASS).is_err()
    {
        return Err(NameError::BadKind(kind.to_owned()));
    }
    Ok(())
}

/// A device as a spec of `kind` names it, qualified.
pub(crate) fn qualify(kind: &str, device: &str) -> Result<QualifiedName, NameError> {
    parse(&format!("{kind}={device}"))
}

/// The shared shape of both rules: `first` for the first character,
/// `middle` for the ones between, a letter or digit last.
fn check_shape(
    value: &str,
    max: usize,
    first: fn(char) -> bool,
    first_rule: &str,
    middle: &str,
) -> Result<(), String> {
    if value.len() > max {
        return Err(format!("is longer than {max} bytes"));
    }
    let mut chars = value.chars();
    let Some(head) = chars.next() else {
        return Err("is empty".to_owned());
    };
    if !first(head) {
        return Err(format!("must start with {first_rule}"));
    }
    let rest: Vec<char> = chars.collect();
    if let Some((last, between)) = rest.split_last() {
        if let Some(c) = between
            .iter()
            .find(|c| !c.is_ascii_alphanumeric() && !middle.contains(**c))
        {
            return Err(format!("has the character {c:?}"));
        }
        if !last.is_ascii_alphanumeric() {
            return Err("must end with a letter or digit".to_owned());
        }
    }
    Ok(())
}

fn check_vendor_or_class(value: &str, max: usize) -> Result<(), String> {
    check_shape(value, max, |c| c.is_ascii_alphabetic(), "a letter", "_-.")
}

fn check_device(value: &str) -> Result<(), String> {
    check_shape(
        value,
        MAX_DEVICE,
        |c| c.is_ascii_alphanumeric(),
        "a letter or digit",
        "_-.:",
    )
}
