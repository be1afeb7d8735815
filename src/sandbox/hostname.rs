//! Pod hostnames: checked once, used for `sethostname(2)` and the pod files.

use thiserror::Error;

/// The kernel's limit (`HOST_NAME_MAX`, `__NEW_UTS_LEN`).
const MAX_HOSTNAME: usize = 64;
const MAX_LABEL: usize = 63;

#[derive(Debug, Error)]
#[error("invalid hostname {hostname:?}: {reason}")]
pub(crate) struct InvalidHostname {
    pub hostname: String,
    pub reason: &'static str,
}

/// Accepts RFC 1123 host names: dot-separated labels of ASCII letters,
/// digits and `-` (not at either end of a label), at most 64 bytes in all.
/// Dots are allowed because host-network pods get the node's name.
pub(crate) fn validate_hostname(hostname: &str) -> Result<(), InvalidHostname> {
    let fail = |reason| {
        Err(InvalidHostname {
            hostname: hostname.to_owned(),
            reason,
        })
    };
    if hostname.is_empty() {
        return fail("it is empty");
    }
    if hostname.len() > MAX_HOSTNAME {
        return fail("it is longer than 64 bytes");
    }
    for label in hostname.split('.') {
        if label.is_empty() {
            return fail("it has an empty label");
        }
        if label.len() > MAX_LABEL {
            return fail("a label is longer than 63 bytes");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return fail("only ASCII letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return fail("a label starts or ends with '-'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_labels_and_node_names() {
        for ok in ["pod-a", "a", "node1.example.com", "A0-b", &"x".repeat(63)] {
            validate_hostname(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn refuses_bad_names() {
        let long = format!("{}.{}", "a".repeat(40), "b".repeat(30));
        for bad in [
            "", "-a", "a-", "a..b", ".a", "a.", "a b", "a\nb", "a_b", "ä", &long,
        ] {
            let err = validate_hostname(bad).expect_err(bad);
            assert_eq!(err.hostname, bad);
        }
        assert!(validate_hostname(&"x".repeat(64)).is_err(), "label > 63");
    }
}
