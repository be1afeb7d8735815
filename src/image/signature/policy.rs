//! `images.signature_policy`: which images need a signature, and whose.
//!
//! A rule covers every image whose canonical name (`registry/repository`,
//! e.g. `docker.io/library/busybox`, see [`Reference::canonical_name`]) is
//! its prefix or lies below it, on path-component boundaries:
//! `127.0.0.1:5000/signed` covers `127.0.0.1:5000/signed/app` but not
//! `127.0.0.1:5000/signedx`. The most specific rule (longest prefix)
//! decides; `*` covers every image at the lowest precedence. An image no
//! rule covers needs no signature.
//!
//! Prefixes get the same canonical registry as names, so `ghcr.io:443` or
//! `index.docker.io` in a rule mean what they say. A Docker Hub prefix of
//! one component (`docker.io/nginx`) is ambiguous: the image `nginx` is
//! `docker.io/library/nginx`, while `docker.io/nginx/...` is the user
//! `nginx`'s namespace. Such a rule covers both, the official spelling a
//! little less specifically than a rule written out for it.
//!
//! [`Reference::canonical_name`]: crate::image::reference::Reference::canonical_name
//!
//! Rules are checked as the config is parsed (shape of the prefix, the key
//! list matching the action); the key files are read once at start-up by
//! [`SignaturePolicy::load`], so a missing or malformed key stops the
//! daemon instead of refusing pulls later.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::keys::{self, TrustedKey};
use super::SignatureError;
use crate::image::reference::{canonical_registry, DEFAULT_REGISTRY, OFFICIAL_NAMESPACE};

/// The prefix that covers every image.
const EVERY_IMAGE: &str = "*";

/// Longest prefix accepted; a longer one could never match a name
/// (registries cap `registry/repository` at 255 characters).
const PREFIX_MAX: usize = 255;

/// What a rule asks of the images it covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RuleAction {
    /// A cosign signature by one of `keys` is required.
    #[default]
    Verify,
    /// Never pulled.
    Reject,
    /// Pulled without any check: an exception below a broader rule.
    Accept,
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleAction::Verify => "verify",
            RuleAction::Reject => "reject",
            RuleAction::Accept => "accept",
        })
    }
}

/// Which repository a `verify` rule's signatures must name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SignedIdentity {
    /// The payload's `critical.identity.docker-reference` must be the
    /// repository pulled (both in canonical form, tag and digest ignored):
    /// a key that signs images of several repositories does not vouch for
    /// one of them under another's name.
    #[default]
    MatchRepository,
    /// Any repository: for images copied, with their signatures, under a
    /// name they were not signed for.
    Any,
}

impl fmt::Display for SignedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignedIdentity::MatchRepository => "match_repository",
            SignedIdentity::Any => "any",
        })
    }
}

/// One `[[images.signature_policy]]` entry as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRule")]
pub(crate) struct PolicyRule {
    /// `registry[/repository path]`, without tag or digest; `*` for all.
    pub prefix: String,
    pub action: RuleAction,
    /// PEM public keys (absolute paths); any one of them may have signed.
    pub keys: Vec<PathBuf>,
    /// What the signed payload must name (`verify` rules only).
    pub signed_identity: SignedIdentity,
}

/// The TOML shape, before [`PolicyRule`]'s checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    prefix: String,
    #[serde(default)]
    action: RuleAction,
    #[serde(default)]
    keys: Vec<PathBuf>,
    signed_identity: Option<SignedIdentity>,
}

impl TryFrom<RawRule> for PolicyRule {
    type Error = String;

    fn try_from(raw: RawRule) -> Result<Self, String> {
        let prefix = normalise_prefix(&raw.prefix)?;
        match (raw.action, raw.keys.is_empty()) {
            (RuleAction::Verify, true) => {
                return Err(format!(
                    "rule {prefix:?}: `keys` must list at least one public key file (or set action = \"reject\" or \"accept\")"
                ))
            }
            (RuleAction::Reject | RuleAction::Accept, false) => {
                return Err(format!(
                    "rule {prefix:?}: action = \"{}\" takes no `keys`",
                    raw.action
                ))
            }
            _ => {}
        }
        if let (RuleAction::Reject | RuleAction::Accept, Some(identity)) =
            (raw.action, raw.signed_identity)
        {
            return Err(format!(
                "rule {prefix:?}: action = \"{}\" checks no signature, so signed_identity = \"{identity}\" means nothing",
                raw.action
            ));
        }
        if let Some(bad) = raw.keys.iter().find(|k| !k.is_absolute()) {
            return Err(format!(
                "rule {prefix:?}: key file {} is not an absolute path",
                bad.display()
            ));
        }
        Ok(PolicyRule {
            prefix,
            action: raw.action,
            keys: raw.keys,
            signed_identity: raw.signed_identity.unwrap_or_default(),
        })
    }
}

/// `prefix` without a trailing `/` and with its registry in canonical
/// form, or why it can never match a name.
fn normalise_prefix(prefix: &str) -> Result<String, String> {
    if prefix == EVERY_IMAGE {
        return Ok(prefix.to_owned());
    }
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(format!(
            "signature policy prefix {prefix:?} is empty (use \"*\" for every image)"
        ));
    }
    if trimmed.len() > PREFIX_MAX {
        return Err(format!(
            "signature policy prefix {prefix:?} is longer than {PREFIX_MAX} characters"
        ));
    }
    // Names are compared in their normalised, lower-case form; a tag or a
    // digest would make the rule match nothing.
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-:/[]".contains(&b);
    if !trimmed.bytes().all(allowed) || trimmed.split('/').any(str::is_empty) {
        return Err(format!(
            "signature policy prefix {prefix:?} is not a lower-case `registry[/repository]` name (no tag, digest or wildcard)"
        ));
    }
    let path_has_colon = trimmed
        .split_once('/')
        .is_some_and(|(_, p)| p.contains(':'));
    if path_has_colon {
        return Err(format!(
            "signature policy prefix {prefix:?} names a tag; rules cover repositories"
        ));
    }
    Ok(match trimmed.split_once('/') {
        Some((registry, path)) => format!("{}/{path}", canonical_registry(registry)),
        None => canonical_registry(trimmed),
    })
}

/// The official-image spelling a one-component Docker Hub prefix also
/// stands for: `docker.io/nginx` -> `docker.io/library/nginx`.
fn official_spelling(prefix: &str) -> Option<String> {
    let path = prefix.strip_prefix(DEFAULT_REGISTRY)?.strip_prefix('/')?;
    (!path.contains('/') && path != OFFICIAL_NAMESPACE)
        .then(|| format!("{DEFAULT_REGISTRY}/{OFFICIAL_NAMESPACE}/{path}"))
}

/// What a pull of one image must satisfy.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Requirement<'a> {
    /// No rule covers the image, or its rule accepts anything.
    None,
    Reject {
        rule: &'a str,
    },
    Verify {
        rule: &'a str,
        keys: &'a [TrustedKey],
        identity: SignedIdentity,
    },
}

/// A rule with its keys read.
#[derive(Debug)]
struct LoadedRule {
    prefix: String,
    /// See [`official_spelling`].
    official: Option<String>,
    action: RuleAction,
    keys: Vec<TrustedKey>,
    identity: SignedIdentity,
}

impl LoadedRule {
    fn new(prefix: &str, action: RuleAction, keys: Vec<TrustedKey>) -> Self {
        LoadedRule {
            prefix: prefix.to_owned(),
            official: official_spelling(prefix),
            action,
            keys,
            identity: SignedIdentity::default(),
        }
    }

    /// How specific the rule is for `name`, if it covers it at all: the
    /// length of the prefix that matched, and whether it was written so
    /// (a rule spelled out beats another's official spelling of the same
    /// length, whatever their order).
    fn specificity(&self, name: &str) -> Option<(usize, bool)> {
        if self.prefix == EVERY_IMAGE {
            return Some((0, true));
        }
        let covers = |prefix: &str| {
            name.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if covers(&self.prefix) {
            return Some((self.prefix.len(), true));
        }
        let official = self.official.as_deref().filter(|o| covers(o))?;
        Some((official.len(), false))
    }
}

/// The rules in force, keys loaded. Immutable once the daemon runs.
#[derive(Debug, Default)]
pub(crate) struct SignaturePolicy {
    rules: Vec<LoadedRule>,
}

impl SignaturePolicy {
    /// Reads every rule's keys. Fails on the first unreadable or unusable
    /// key file, or on two rules with the same prefix (which would leave
    /// the decision to their order).
    pub(crate) fn load(rules: &[PolicyRule]) -> Result<Self, SignatureError> {
        let mut seen = HashSet::new();
        let mut loaded = Vec::with_capacity(rules.len());
        for rule in rules {
            if !seen.insert(rule.prefix.as_str()) {
                return Err(SignatureError::DuplicateRule {
                    prefix: rule.prefix.clone(),
                });
            }
            let keys = rule
                .keys
                .iter()
                .map(|path| keys::load(path))
                .collect::<Result<Vec<_>, _>>()?;
            loaded.push(LoadedRule {
                identity: rule.signed_identity,
                ..LoadedRule::new(&rule.prefix, rule.action, keys)
            });
        }
        Ok(SignaturePolicy { rules: loaded })
    }

    /// The requirement for the image whose canonical name
    /// ([`Reference::canonical_name`]) is `name`.
    ///
    /// [`Reference::canonical_name`]: crate::image::reference::Reference::canonical_name
    pub(crate) fn requirement(&self, name: &str) -> Requirement<'_> {
        let Some(rule) = self
            .rules
            .iter()
            .filter_map(|r| r.specificity(name).map(|s| (s, r)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, r)| r)
        else {
            return Requirement::None;
        };
        match rule.action {
            RuleAction::Accept => Requirement::None,
            RuleAction::Reject => Requirement::Reject { rule: &rule.prefix },
            RuleAction::Verify => Requirement::Verify {
                rule: &rule.prefix,
                keys: &rule.keys,
                identity: rule.identity,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        signature_policy: Vec<PolicyRule>,
    }

    fn parse(toml_text: &str) -> Result<Vec<PolicyRule>, String> {
        toml::from_str::<Doc>(toml_text)
            .map(|d| d.signature_policy)
            .map_err(|e| e.to_string())
    }

    fn rule(prefix: &str, action: RuleAction) -> LoadedRule {
        LoadedRule::new(prefix, action, Vec::new())
    }

    fn decided(policy: &SignaturePolicy, name: &str) -> String {
        match policy.requirement(name) {
            Requirement::None => "none".to_owned(),
            Requirement::Reject { rule } => format!("reject {rule}"),
            Requirement::Verify { rule, .. } => format!("verify {rule}"),
        }
    }

    #[test]
    fn rules_parse_and_normalise() {
        let rules = parse(
            r#"
            [[signature_policy]]
            prefix = "127.0.0.1:5000/signed/"
            keys = ["/etc/pvecri/cosign.pub"]
            [[signature_policy]]
            prefix = "127.0.0.1:5000/signed/public"
            action = "accept"
            [[signature_policy]]
            prefix = "*"
            action = "reject"
            "#,
        )
        .unwrap();
        assert_eq!(rules[0].prefix, "127.0.0.1:5000/signed");
        assert_eq!(rules[0].action, RuleAction::Verify);
        assert_eq!(rules[0].keys, [PathBuf::from("/etc/pvecri/cosign.pub")]);
        assert_eq!(rules[1].action, RuleAction::Accept);
        assert_eq!(rules[2].prefix, "*");
    }

    #[test]
    fn the_daemon_config_carries_the_rules_and_refuses_bad_ones() {
        use crate::config::Config;
        let c = Config::from_toml(
            "[[images.signature_policy]]\nprefix = \"a.io/x/\"\nkeys = [\"/k.pub\"]\n",
        )
        .unwrap();
        assert_eq!(c.images.signature_policy[0].prefix, "a.io/x");
        assert!(Config::from_toml("")
            .unwrap()
            .images
            .signature_policy
            .is_empty());
        let msg = Config::from_toml("[images]\n[[images.signature_policy]]\nprefix = \"a.io/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("must list at least one public key") && msg.contains("line 2"),
            "{msg}"
        );
    }

    #[test]
    fn malformed_rules_are_refused_with_the_reason() {
        for (text, wanted) in [
            (r#"prefix = "a.io/x""#, "must list at least one public key"),
            (
                "prefix = \"a.io/x\"\naction = \"reject\"\nkeys = [\"/k\"]",
                "takes no `keys`",
            ),
            (
                r#"prefix = "a.io/x"
keys = ["cosign.pub"]"#,
                "not an absolute path",
            ),
            (
                r#"prefix = "/"
action = "reject""#,
                "is empty",
            ),
            (
                r#"prefix = "a.io/App"
action = "reject""#,
                "lower-case",
            ),
            (
                r#"prefix = "a.io/*"
action = "reject""#,
                "lower-case",
            ),
            (
                r#"prefix = "a.io//x"
action = "reject""#,
                "lower-case",
            ),
            (
                r#"prefix = "a.io/x:v1"
action = "reject""#,
                "names a tag",
            ),
            (
                r#"prefix = "a.io/x@sha256:00"
action = "reject""#,
                "lower-case",
            ),
            (
                r#"prefix = "a.io/x"
action = "allow""#,
                "unknown variant",
            ),
            (
                r#"prefix = "a.io/x"
action = "reject"
key = "/k""#,
                "unknown field",
            ),
        ] {
            let err = parse(&format!("[[signature_policy]]\n{text}")).unwrap_err();
            assert!(err.contains(wanted), "{text}: {err}");
        }
        let long = format!("prefix = \"a.io/{}\"\naction = \"reject\"", "x".repeat(300));
        assert!(parse(&format!("[[signature_policy]]\n{long}"))
            .unwrap_err()
            .contains("longer than"));
    }

    #[test]
    fn longest_prefix_on_component_boundaries_wins() {
        let policy = SignaturePolicy {
            rules: vec![
                rule("127.0.0.1:5000", RuleAction::Reject),
                rule("127.0.0.1:5000/signed", RuleAction::Verify),
                rule("127.0.0.1:5000/signed/public", RuleAction::Accept),
                rule("docker.io/library/busybox", RuleAction::Verify),
            ],
        };
        for (name, wanted) in [
            ("127.0.0.1:5000/signed/app", "verify 127.0.0.1:5000/signed"),
            ("127.0.0.1:5000/signed", "verify 127.0.0.1:5000/signed"),
            ("127.0.0.1:5000/signed/public/app", "none"),
            (
                "127.0.0.1:5000/signed/publicity",
                "verify 127.0.0.1:5000/signed",
            ),
            ("127.0.0.1:5000/signedx/app", "reject 127.0.0.1:5000"),
            ("127.0.0.1:50000/signed/app", "none"),
            (
                "docker.io/library/busybox",
                "verify docker.io/library/busybox",
            ),
            ("docker.io/library/busyboxes", "none"),
            ("quay.io/org/app", "none"),
        ] {
            assert_eq!(decided(&policy, name), wanted, "{name}");
        }
    }

    #[test]
    fn star_is_the_fallback_and_any_prefix_beats_it() {
        let policy = SignaturePolicy {
            rules: vec![
                rule("*", RuleAction::Reject),
                rule("registry.k8s.io", RuleAction::Accept),
            ],
        };
        assert_eq!(decided(&policy, "docker.io/library/busybox"), "reject *");
        assert_eq!(decided(&policy, "registry.k8s.io/pause"), "none");
        assert_eq!(decided(&SignaturePolicy::default(), "a.io/b"), "none");
    }

    #[test]
    fn prefixes_get_the_canonical_registry() {
        let rules = parse(
            r#"
            [[signature_policy]]
            prefix = "ghcr.io:443/org"
            action = "reject"
            [[signature_policy]]
            prefix = "registry-1.docker.io/bitnami/"
            action = "reject"
            [[signature_policy]]
            prefix = "index.docker.io"
            action = "reject"
            [[signature_policy]]
            prefix = "quay.io:8443/x"
            action = "reject"
            "#,
        )
        .unwrap();
        let prefixes: Vec<&str> = rules.iter().map(|r| r.prefix.as_str()).collect();
        assert_eq!(
            prefixes,
            [
                "ghcr.io/org",
                "docker.io/bitnami",
                "docker.io",
                "quay.io:8443/x"
            ]
        );
        // Two spellings of one registry are one prefix.
        let twice = parse(
            "[[signature_policy]]\nprefix = \"docker.io/x\"\naction = \"reject\"\n\
             [[signature_policy]]\nprefix = \"index.docker.io/x\"\naction = \"accept\"\n",
        )
        .unwrap();
        assert!(matches!(
            SignaturePolicy::load(&twice),
            Err(SignatureError::DuplicateRule { .. })
        ));
    }

    #[test]
    fn other_spellings_of_a_registry_get_its_rules() {
        use crate::image::reference::Reference;
        let policy = SignaturePolicy {
            rules: vec![
                rule("quay.io", RuleAction::Reject),
                rule("ghcr.io/org", RuleAction::Verify),
                rule("docker.io/library/x", RuleAction::Reject),
            ],
        };
        for (image, wanted) in [
            ("QUAY.IO/x/y:1", "reject quay.io"),
            ("quay.io:443/x/y", "reject quay.io"),
            ("ghcr.io:443/org/app:v1", "verify ghcr.io/org"),
            ("GHCR.io/org/app", "verify ghcr.io/org"),
            (
                "registry-1.docker.io/library/x",
                "reject docker.io/library/x",
            ),
            ("registry-1.docker.io/x", "reject docker.io/library/x"),
            ("index.docker.io/x:1", "reject docker.io/library/x"),
            ("x", "reject docker.io/library/x"),
            ("quay.io:8443/x/y", "none"),
        ] {
            let name = Reference::parse(image).unwrap().canonical_name();
            assert_eq!(decided(&policy, &name), wanted, "{image}");
        }
    }

    #[test]
    fn a_one_component_docker_hub_prefix_covers_the_official_image_too() {
        let rules = parse(
            "[[signature_policy]]\nprefix = \"docker.io/nginx\"\naction = \"reject\"\n\
             [[signature_policy]]\nprefix = \"docker.io/library\"\naction = \"accept\"\n",
        )
        .unwrap();
        let policy = SignaturePolicy::load(&rules).unwrap();
        for (name, wanted) in [
            ("docker.io/library/nginx", "reject docker.io/nginx"),
            ("docker.io/nginx/tools", "reject docker.io/nginx"),
            ("docker.io/library/nginxx", "none"),
            ("docker.io/library/busybox", "none"),
        ] {
            assert_eq!(decided(&policy, name), wanted, "{name}");
        }
        assert_eq!(official_spelling("docker.io/library"), None);
        assert_eq!(official_spelling("docker.io/a/b"), None);
        assert_eq!(official_spelling("docker.io"), None);
        assert_eq!(official_spelling("docker.iox/a"), None);
        assert_eq!(official_spelling("quay.io/a"), None);

        // A rule written out for the official image beats the short
        // spelling's, in either order.
        for reversed in [false, true] {
            let mut rules = vec![
                rule("docker.io/nginx", RuleAction::Reject),
                rule("docker.io/library/nginx", RuleAction::Accept),
            ];
            if reversed {
                rules.reverse();
            }
            let policy = SignaturePolicy { rules };
            assert_eq!(decided(&policy, "docker.io/library/nginx"), "none");
            assert_eq!(
                decided(&policy, "docker.io/nginx/tools"),
                "reject docker.io/nginx"
            );
        }
    }

    #[test]
    fn signed_identity_defaults_to_the_repository_and_belongs_to_verify() {
        let rules = parse(
            "[[signature_policy]]\nprefix = \"a.io/x\"\nkeys = [\"/k\"]\n\
             [[signature_policy]]\nprefix = \"a.io/y\"\nkeys = [\"/k\"]\nsigned_identity = \"any\"\n\
             [[signature_policy]]\nprefix = \"a.io/z\"\nkeys = [\"/k\"]\nsigned_identity = \"match_repository\"\n",
        )
        .unwrap();
        let identities: Vec<SignedIdentity> = rules.iter().map(|r| r.signed_identity).collect();
        assert_eq!(
            identities,
            [
                SignedIdentity::MatchRepository,
                SignedIdentity::Any,
                SignedIdentity::MatchRepository
            ]
        );
        for (text, wanted) in [
            (
                "prefix = \"a.io/x\"\naction = \"accept\"\nsigned_identity = \"any\"",
                "means nothing",
            ),
            (
                "prefix = \"a.io/x\"\naction = \"reject\"\nsigned_identity = \"match_repository\"",
                "means nothing",
            ),
            (
                "prefix = \"a.io/x\"\nkeys = [\"/k\"]\nsigned_identity = \"other\"",
                "unknown variant",
            ),
        ] {
            let err = parse(&format!("[[signature_policy]]\n{text}")).unwrap_err();
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }

    #[test]
    fn duplicate_prefixes_and_bad_keys_fail_the_load() {
        let rules = parse(
            "[[signature_policy]]\nprefix = \"a.io/x/\"\naction = \"reject\"\n\
             [[signature_policy]]\nprefix = \"a.io/x\"\naction = \"accept\"\n",
        )
        .unwrap();
        let err = SignaturePolicy::load(&rules).unwrap_err();
        assert!(matches!(err, SignatureError::DuplicateRule { .. }), "{err}");

        let missing = parse(
            "[[signature_policy]]\nprefix = \"a.io/x\"\nkeys = [\"/nonexistent/pvecri-cosign.pub\"]\n",
        )
        .unwrap();
        let err = SignaturePolicy::load(&missing).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/pvecri-cosign.pub"),
            "{err}"
        );
    }
}
