//! Object keys from a template.
//!
//! Placeholders: `{node}` (`NODE_NAME`, else the host name), `{pod}`
//! (`POD_NAME`), `{namespace}` (`POD_NAMESPACE`), `{cluster}`
//! (`CLUSTER_NAME`), `{instance_id}` (instance metadata, IMDSv2, fetched only
//! when the template uses it), `{yyyy} {mm} {dd} {hh} {mi}` (the capture's UTC
//! start, never the upload time) and `{file}` (the capture's file name). The
//! same file always maps to the same key, so uploading it again is harmless.
//!
//! A template must name the node (`{node}`, `{instance_id}` or `{pod}`):
//! capture names are start times, so without it two nodes' captures of the
//! same second would get one key and the later upload would replace the
//! other.

use std::fmt::Write as _;

use crate::CaptureName;

/// A key template that cannot work; found before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "key template {template:?} uses unknown placeholder {{{name}}}; valid placeholders: {valid}"
    )]
    UnknownPlaceholder {
        template: String,
        name: String,
        valid: String,
    },
    #[error("key template {template:?} has an unclosed '{{'")]
    UnclosedPlaceholder { template: String },
    #[error(
        "key template {template:?} must not start with '/' and must end with {{file}} or otherwise name each capture uniquely ({{file}} is missing)"
    )]
    KeyNotUnique { template: String },
    #[error(
        "key template {template:?} has no per-node placeholder: add {{node}}, {{instance_id}} or {{pod}} (e.g. tcp-dumps/{{node}}/{{yyyy}}/{{mm}}/{{dd}}/{{hh}}/{{file}}); capture names are start times, so without one two nodes' captures of the same second get the same key and one would overwrite the other"
    )]
    KeyNotPerNode { template: String },
    #[error(
        "key template uses {{{placeholder}}} but {var} is not set (set it, e.g. from the Kubernetes downward API, or drop the placeholder)"
    )]
    MissingEnv {
        placeholder: &'static str,
        var: &'static str,
    },
}

/// The default template: the familiar `tcp-dumps/` prefix, then node and the
/// capture's start hour.
pub const DEFAULT_TEMPLATE: &str = "tcp-dumps/{node}/{yyyy}/{mm}/{dd}/{hh}/{file}";

/// Name of the object the `--check` probe asks about (never created).
pub const PROBE_OBJECT: &str = ".s3-tcpdump-probe";
/// The empty object written at start to learn whether the store confirms
/// checksums (next to [`PROBE_OBJECT`]; never a capture name).
pub const CHECKSUM_PROBE_OBJECT: &str = ".s3-tcpdump-checksum-probe";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    Node,
    Pod,
    Namespace,
    Cluster,
    InstanceId,
    Year,
    Month,
    Day,
    Hour,
    Minute,
    File,
}

impl Placeholder {
    const ALL: [(&'static str, Placeholder); 11] = [
        ("node", Placeholder::Node),
        ("pod", Placeholder::Pod),
        ("namespace", Placeholder::Namespace),
        ("cluster", Placeholder::Cluster),
        ("instance_id", Placeholder::InstanceId),
        ("yyyy", Placeholder::Year),
        ("mm", Placeholder::Month),
        ("dd", Placeholder::Day),
        ("hh", Placeholder::Hour),
        ("mi", Placeholder::Minute),
        ("file", Placeholder::File),
    ];

    /// One of these in a template keeps one node's keys apart from another's.
    const PER_NODE: [Placeholder; 3] =
        [Placeholder::Node, Placeholder::InstanceId, Placeholder::Pod];

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }

    fn valid_list() -> String {
        Self::ALL
            .iter()
            .map(|(n, _)| format!("{{{n}}}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Placeholder(Placeholder),
}

/// A parsed key template; unknown placeholders were refused when parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    source: String,
    segments: Vec<Segment>,
}

/// Values of the placeholders that do not come from the capture itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyContext {
    pub node: String,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub cluster: Option<String>,
    pub instance_id: Option<String>,
}

impl KeyTemplate {
    pub fn parse(template: &str) -> Result<Self, KeyError> {
        let mut segments = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                segments.push(Segment::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| KeyError::UnclosedPlaceholder {
                    template: template.to_owned(),
                })?;
            let name = &after[..close];
            let placeholder =
                Placeholder::parse(name).ok_or_else(|| KeyError::UnknownPlaceholder {
                    template: template.to_owned(),
                    name: name.to_owned(),
                    valid: Placeholder::valid_list(),
                })?;
            segments.push(Segment::Placeholder(placeholder));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_owned()));
        }
        let parsed = Self {
            source: template.to_owned(),
            segments,
        };
        if template.starts_with('/') || !parsed.uses(Placeholder::File) {
            return Err(KeyError::KeyNotUnique {
                template: template.to_owned(),
            });
        }
        if !Placeholder::PER_NODE.iter().any(|p| parsed.uses(*p)) {
            return Err(KeyError::KeyNotPerNode {
                template: template.to_owned(),
            });
        }
        Ok(parsed)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.segments.contains(&Segment::Placeholder(placeholder))
    }

    /// The literal text before the first placeholder, up to its last `/`:
    /// the part of the key space every object shares (`tcp-dumps/`).
    pub fn static_prefix(&self) -> &str {
        let literal = match self.segments.first() {
            Some(Segment::Literal(text)) => text.as_str(),
            _ => "",
        };
        match literal.rfind('/') {
            Some(slash) => &literal[..=slash],
            None => "",
        }
    }

    /// The key of one capture.
    pub fn render(&self, ctx: &KeyContext, capture: &CaptureName) -> String {
        let start = capture.start();
        let mut key = String::with_capacity(self.source.len() + 32);
        for segment in &self.segments {
            // Writing to a String cannot fail.
            let _ = match segment {
                Segment::Literal(text) => key.write_str(text),
                Segment::Placeholder(p) => match p {
                    Placeholder::Node => key.write_str(&ctx.node),
                    Placeholder::Pod => key.write_str(ctx.pod.as_deref().unwrap_or("")),
                    Placeholder::Namespace => key.write_str(ctx.namespace.as_deref().unwrap_or("")),
                    Placeholder::Cluster => key.write_str(ctx.cluster.as_deref().unwrap_or("")),
                    Placeholder::InstanceId => {
                        key.write_str(ctx.instance_id.as_deref().unwrap_or(""))
                    }
                    Placeholder::Year => write!(key, "{}", start.format("%Y")),
                    Placeholder::Month => write!(key, "{}", start.format("%m")),
                    Placeholder::Day => write!(key, "{}", start.format("%d")),
                    Placeholder::Hour => write!(key, "{}", start.format("%H")),
                    Placeholder::Minute => write!(key, "{}", start.format("%M")),
                    Placeholder::File => key.write_str(&capture.ready_file_name()),
                },
            };
        }
        key
    }

    /// The context from the environment. `{instance_id}` is filled in
    /// separately (it needs the network); a used placeholder whose variable
    /// is unset is an error.
    pub fn context_from_env(
        &self,
        env: impl Fn(&str) -> Option<String>,
        hostname: impl FnOnce() -> String,
    ) -> Result<KeyContext, KeyError> {
        let nonempty = |var: &str| env(var).filter(|v| !v.is_empty());
        let required = |placeholder: Placeholder, name: &'static str, var: &'static str| {
            let value = nonempty(var);
            if self.uses(placeholder) && value.is_none() {
                return Err(KeyError::MissingEnv {
                    placeholder: name,
                    var,
                });
            }
            Ok(value)
        };
        Ok(KeyContext {
            node: nonempty("NODE_NAME").unwrap_or_else(hostname),
            pod: required(Placeholder::Pod, "pod", "POD_NAME")?,
            namespace: required(Placeholder::Namespace, "namespace", "POD_NAMESPACE")?,
            cluster: required(Placeholder::Cluster, "cluster", "CLUSTER_NAME")?,
            instance_id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(name: &str) -> CaptureName {
        CaptureName::parse_ready(name).unwrap()
    }

    fn ctx() -> KeyContext {
        KeyContext {
            node: "ip-10-0-1-7.ec2.internal".into(),
            pod: Some("s3-tcpdump-abc".into()),
            namespace: Some("s3-tcpdump".into()),
            cluster: Some("prod".into()),
            instance_id: Some("i-0123456789abcdef0".into()),
        }
    }

    #[test]
    fn default_template_uses_capture_start_not_now() {
        let t = KeyTemplate::parse(DEFAULT_TEMPLATE).unwrap();
        assert_eq!(
            t.render(&ctx(), &capture("20261127T142503Z-0002.pcap")),
            "tcp-dumps/ip-10-0-1-7.ec2.internal/2026/11/27/14/20261127T142503Z-0002.pcap"
        );
    }

    #[test]
    fn every_placeholder_renders() {
        let t = KeyTemplate::parse(
            "{cluster}/{namespace}/{pod}/{instance_id}/{yyyy}{mm}{dd}T{hh}{mi}/{node}/{file}",
        )
        .unwrap();
        assert_eq!(
            t.render(&ctx(), &capture("20260102T030405Z.pcap")),
            "prod/s3-tcpdump/s3-tcpdump-abc/i-0123456789abcdef0/20260102T0304/ip-10-0-1-7.ec2.internal/20260102T030405Z.pcap"
        );
        assert!(t.uses(Placeholder::InstanceId));
    }

    #[test]
    fn unknown_placeholder_is_named_with_the_valid_ones() {
        let err = KeyTemplate::parse("x/{host}/{file}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("{host}"), "{err}");
        assert!(err.contains("{node}") && err.contains("{file}"), "{err}");
    }

    #[test]
    fn template_without_file_or_unclosed_is_refused() {
        assert!(KeyTemplate::parse("x/{node}").is_err());
        assert!(KeyTemplate::parse("x/{file").is_err());
        assert!(KeyTemplate::parse("/x/{file}").is_err());
    }

    #[test]
    fn template_without_a_per_node_placeholder_is_refused_naming_the_three() {
        for template in [
            "{file}",
            "tcp-dumps/{file}",
            "tcp-dumps/{cluster}/{namespace}/{yyyy}/{mm}/{dd}/{hh}/{mi}/{file}",
        ] {
            let err = KeyTemplate::parse(template).unwrap_err();
            assert!(
                matches!(err, KeyError::KeyNotPerNode { .. }),
                "{template}: {err}"
            );
            let message = err.to_string();
            for needed in ["{node}", "{instance_id}", "{pod}", "overwrite"] {
                assert!(message.contains(needed), "{template}: {message}");
            }
        }
        for template in [
            "tcp-dumps/{node}/{file}",
            "tcp-dumps/{instance_id}/{file}",
            "tcp-dumps/{pod}/{file}",
            "{file}-{node}",
        ] {
            assert!(KeyTemplate::parse(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn static_prefix_stops_at_the_last_slash_before_a_placeholder() {
        let prefix = |t: &str| KeyTemplate::parse(t).unwrap().static_prefix().to_owned();
        assert_eq!(prefix(DEFAULT_TEMPLATE), "tcp-dumps/");
        assert_eq!(prefix("a/b/c-{node}/{file}"), "a/b/");
        assert_eq!(prefix("{node}/{file}"), "");
    }

    #[test]
    fn missing_env_for_a_used_placeholder_is_an_error() {
        let t = KeyTemplate::parse("{pod}/{file}").unwrap();
        let err = t.context_from_env(|_| None, || "host".into()).unwrap_err();
        assert!(err.to_string().contains("POD_NAME"), "{err}");
        let c = KeyTemplate::parse(DEFAULT_TEMPLATE)
            .unwrap()
            .context_from_env(|_| None, || "host".into())
            .unwrap();
        assert_eq!(c.node, "host");
    }
}
