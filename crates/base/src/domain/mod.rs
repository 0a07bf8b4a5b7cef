//! Domain values whose only constructor checks them: once you hold a [`NamespaceName`] or a
//! [`Tag`], it is valid, and no other layer checks it again.
//!
//! - [`addresses`]: how a node's address index becomes its IPv4 and IPv6 addresses;
//! - [`browser_keys`]: an organization's browser-key settings as stored;
//! - [`credentials`]: API keys and pre-auth keys, without their digests;
//! - [`hostinfo`]: what a client says about itself, kept as it sent it;
//! - [`ids`]: row ids of nodes, namespaces, organizations and keys, which cannot be mixed up;
//! - [`node`]: the [`Node`] every layer above the store works with;
//! - [`policy`]: a stored policy document and which policy it is;
//! - [`tenancy`]: organizations and their namespaces.
//!
//! Every table the store keeps that other planes read has its type here; sea-orm's rows
//! never leave the store.

pub mod addresses;
pub mod browser_keys;
pub mod credentials;
pub mod hostinfo;
pub mod ids;
pub mod node;
pub mod policy;
pub mod tenancy;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use browser_keys::BrowserKeySettings;
pub use credentials::{ApiKey, KeyRefusal, PreauthKey};
pub use ids::{ApiKeyId, InstanceId, NamespaceId, NodeId, OrgId, PreauthKeyId};
pub use node::Node;
pub use policy::{PolicyDocument, PolicyScope};
pub use tenancy::{Namespace, Organization};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// What [`check_label`] accepts, as an ECMA-262 regular expression (the OpenAPI document's
/// `pattern` of every name); a unit test holds the two to the same samples.
pub const LABEL_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

/// What [`Tag::parse`] accepts, as an ECMA-262 regular expression (the document's `pattern`).
pub const TAG_PATTERN: &str = "^tag:[a-z0-9-]{1,63}$";

/// A DNS-label-like name: 1–63 of `[a-z0-9-]`, starting and ending with a letter or digit.
/// Used for organizations, namespaces and node names, since all three end up in MagicDNS names
/// or URLs.
fn check_label(kind: &str, text: &str) -> Result<(), InvalidValue> {
    let ok_chars = text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = !text.starts_with('-') && !text.ends_with('-');
    if text.is_empty() || text.len() > 63 || !ok_chars || !ok_ends {
        return Err(InvalidValue(format!(
            "invalid {kind} {text:?}: use 1-63 lowercase letters, digits or '-', not starting or ending with '-'"
        )));
    }
    Ok(())
}

macro_rules! label_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Result<Self, InvalidValue> {
                check_label($kind, text)?;
                Ok(Self(text.to_string()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

label_type!(
    /// An organization's name (a SaaS customer).
    OrgName,
    "organization name"
);
label_type!(
    /// A namespace's name, unique within its organization; one isolated tailnet.
    NamespaceName,
    "namespace name"
);
label_type!(
    /// A node's name inside its namespace (the first label of its MagicDNS name).
    NodeName,
    "node name"
);

impl NodeName {
    /// Turns whatever hostname a client reports into a usable label: lowercased, other
    /// characters become '-', trimmed to 63. Falls back to "node" when nothing is left.
    pub fn sanitize(hostname: &str) -> NodeName {
        let mut label: String = hostname
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
            .take(63)
            .collect();
        label = label.trim_matches('-').to_string();
        if label.is_empty() {
            label = "node".to_string();
        }
        NodeName(label)
    }

    /// `base` with a numeric suffix, still within 63 characters.
    pub fn with_suffix(&self, n: u32) -> NodeName {
        let suffix = format!("-{n}");
        let keep = 63usize.saturating_sub(suffix.len()).min(self.0.len());
        let stem = self.0[..keep].trim_end_matches('-');
        NodeName(format!("{stem}{suffix}"))
    }
}

/// An ACL tag: `tag:` followed by `[a-z0-9-]+`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let name = text.strip_prefix("tag:").unwrap_or("");
        let ok = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(InvalidValue(format!(
                "invalid tag {text:?}: a tag is \"tag:\" followed by lowercase letters, digits or '-'"
            )));
        }
        Ok(Self(text.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A sorted, duplicate-free set of tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Tags(Vec<Tag>);

impl Tags {
    pub fn new(mut tags: Vec<Tag>) -> Self {
        tags.sort();
        tags.dedup();
        Self(tags)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.0.iter()
    }
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|t| t.0.clone()).collect()
    }
    /// The stored form: a JSON array of strings.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "[]".to_string())
    }
    /// Reads the stored form back; anything unreadable (never written by us) is an empty set.
    pub fn from_json(text: &str) -> Self {
        Self::from_stored(text).unwrap_or_default()
    }
    /// Reads the stored form back, refusing what we never write: not an array of tags.
    pub fn from_stored(text: &str) -> Result<Self, InvalidValue> {
        let raw: Vec<String> =
            serde_json::from_str(text).map_err(|err| InvalidValue(format!("tags {text:?} are not a list: {err}")))?;
        Ok(Self::new(raw.iter().map(|t| Tag::parse(t)).collect::<Result<_, _>>()?))
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Tags::new(Vec::<Tag>::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(NamespaceName::parse("alice-01").is_ok());
        for bad in ["", "-a", "a-", "Alice", "a_b", "a.b", &"a".repeat(64)] {
            assert!(NamespaceName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tags() {
        assert!(Tag::parse("tag:cli").is_ok());
        for bad in ["cli", "tag:", "tag:CLI", "tag:a b", "tag:a_b"] {
            assert!(Tag::parse(bad).is_err(), "{bad:?}");
        }
        let tags =
            Tags::new(vec![Tag::parse("tag:b").unwrap(), Tag::parse("tag:a").unwrap(), Tag::parse("tag:b").unwrap()]);
        assert_eq!(tags.to_json(), r#"["tag:a","tag:b"]"#);
        assert_eq!(Tags::from_json(&tags.to_json()), tags);
    }

    /// Texts on both sides of every rule of the validators: length, alphabet, ends, prefix.
    const SAMPLES: &[&str] = &[
        "",
        "a",
        "0",
        "-",
        "a-b",
        "a--b",
        "-a",
        "a-",
        "Alice",
        "a_b",
        "a.b",
        "a b",
        " a",
        "a\n",
        "é",
        "tag:",
        "tag:a",
        "tag:cli",
        "tag:-",
        "tag:a-",
        "tag:-a",
        "tag:CLI",
        "tag:a_b",
        "tag:a b",
        "tag:a:b",
        "Tag:a",
        "tag:é",
        "tag:\u{0}",
        "a\u{0}",
    ];

    /// Every sample, plus texts at and just past the length limits.
    fn samples() -> Vec<String> {
        let mut all: Vec<String> = SAMPLES.iter().map(|s| s.to_string()).collect();
        for n in [62, 63, 64] {
            all.push("a".repeat(n));
            all.push(format!("a{}a", "-".repeat(n - 2)));
            all.push(format!("tag:{}", "a".repeat(n)));
            all.push(format!("tag:{}", "-".repeat(n)));
        }
        all
    }

    /// The OpenAPI document's patterns must accept exactly what the validators accept, or a
    /// client that follows the document is refused (or one that does not is surprised).
    #[test]
    fn patterns_agree_with_the_validators() {
        let label = regex::Regex::new(LABEL_PATTERN).unwrap();
        let tag = regex::Regex::new(TAG_PATTERN).unwrap();
        let (mut labels, mut tags) = (0, 0);
        for text in samples() {
            let is_label = NamespaceName::parse(&text).is_ok();
            assert_eq!(label.is_match(&text), is_label, "label {text:?}");
            assert_eq!(NodeName::parse(&text).is_ok(), is_label, "node name {text:?}");
            assert_eq!(OrgName::parse(&text).is_ok(), is_label, "organization name {text:?}");
            let is_tag = Tag::parse(&text).is_ok();
            assert_eq!(tag.is_match(&text), is_tag, "tag {text:?}");
            labels += usize::from(is_label);
            tags += usize::from(is_tag);
        }
        // Both sides of each pattern were tried.
        assert!(labels > 3 && labels < samples().len() / 2, "{labels} labels accepted");
        assert!(tags > 3 && tags < samples().len() / 2, "{tags} tags accepted");
    }

    #[test]
    fn hostnames_become_labels() {
        assert_eq!(NodeName::sanitize("My_Laptop.local").as_str(), "my-laptop-local");
        assert_eq!(NodeName::sanitize("---").as_str(), "node");
        assert_eq!(NodeName::sanitize(&"x".repeat(80)).with_suffix(12).as_str().len(), 63);
    }
}
