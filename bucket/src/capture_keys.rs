//! Capture keys: where each capture goes, from a template.
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
//!
//! Every key is a valid S3 key whatever the values: a value is escaped so
//! that it stays inside its own segment (`%`, `/` and control characters
//! percent-encoded, `.` and `..` as `%2E`, an empty value as `_`) and one
//! longer than 128 bytes is cut and ends in a digest of the whole value, so
//! two values never share a key. The template's own text is checked when it
//! is parsed: no empty, `.` or `..` segment, no control character, and no
//! key that could grow past S3's 1024 bytes.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use chrono::{DateTime, Utc};
use spool::CaptureName;

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
        "key template {template:?} {problem}; S3 keys need non-empty segments other than '.' and '..', no control characters and at most 1024 bytes"
    )]
    KeyTemplateShape { template: String, problem: String },
    #[error(
        "key template uses {{{placeholder}}} but {var} is not set (set it, e.g. from the Kubernetes downward API, or drop the placeholder)"
    )]
    MissingEnv {
        placeholder: &'static str,
        var: &'static str,
    },
}

/// The default template: the familiar `tcp-dumps/` prefix, then
/// [`DEFAULT_LAYOUT`].
pub const DEFAULT_TEMPLATE: &str = "tcp-dumps/{node}/{yyyy}/{mm}/{dd}/{hh}/{file}";

/// The default template below its static prefix: node and the capture's
/// start hour.
pub const DEFAULT_LAYOUT: &str = "{node}/{yyyy}/{mm}/{dd}/{hh}/{file}";

/// S3's limit on a key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Longest rendering of one placeholder value. Kubernetes names and
/// instance ids are far shorter; five such values and a long prefix still
/// fit in [`MAX_KEY_BYTES`].
const MAX_VALUE_BYTES: usize = 128;

/// Longest rendering of a time placeholder or `{file}` (a start stamp, a
/// `-` and a `u32` sequence, `.pcap`), with room for years past 9999.
const MAX_TIME_BYTES: usize = 8;
const MAX_FILE_BYTES: usize = "+99999101T000000Z-4294967295.pcap".len();

/// Name of the object the `--check` probe asks about (never created), under
/// the template's [`KeyTemplate::static_prefix`].
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

    /// The most bytes this placeholder can add to a key.
    fn max_bytes(self) -> usize {
        match self {
            Placeholder::Node
            | Placeholder::Pod
            | Placeholder::Namespace
            | Placeholder::Cluster
            | Placeholder::InstanceId => MAX_VALUE_BYTES,
            Placeholder::File => MAX_FILE_BYTES,
            Placeholder::Year
            | Placeholder::Month
            | Placeholder::Day
            | Placeholder::Hour
            | Placeholder::Minute => MAX_TIME_BYTES,
        }
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
        if let Some(problem) = parsed.shape_problem() {
            return Err(KeyError::KeyTemplateShape {
                template: template.to_owned(),
                problem,
            });
        }
        Ok(parsed)
    }

    /// What in the template's own text would make an invalid key. Values
    /// are escaped into non-empty pieces that are never `.` or `..`, so
    /// only a segment of literal text alone can be empty or a dot segment.
    fn shape_problem(&self) -> Option<String> {
        let mut longest = 0;
        // The current `/`-separated segment: its literal text and whether a
        // placeholder is part of it.
        let mut text = String::new();
        let mut has_placeholder = false;
        let mut problem = None;
        let mut end_segment = |text: &mut String, has_placeholder: &mut bool| {
            if !*has_placeholder && problem.is_none() {
                problem = match text.as_str() {
                    "" => Some("has an empty segment ('//' or a '/' at the end)".to_owned()),
                    "." | ".." => Some(format!("has a {text:?} segment")),
                    _ => None,
                };
            }
            text.clear();
            *has_placeholder = false;
        };
        for segment in &self.segments {
            match segment {
                Segment::Literal(literal) => {
                    if literal.chars().any(char::is_control) {
                        return Some("contains a control character".to_owned());
                    }
                    longest += literal.len();
                    let mut parts = literal.split('/');
                    if let Some(first) = parts.next() {
                        text.push_str(first);
                    }
                    for part in parts {
                        end_segment(&mut text, &mut has_placeholder);
                        text.push_str(part);
                    }
                }
                Segment::Placeholder(p) => {
                    longest += p.max_bytes();
                    has_placeholder = true;
                }
            }
        }
        end_segment(&mut text, &mut has_placeholder);
        if problem.is_none() && longest > MAX_KEY_BYTES {
            problem = Some(format!(
                "can render keys of up to {longest} bytes (each of {{node}} {{pod}} {{namespace}} {{cluster}} {{instance_id}} counts {MAX_VALUE_BYTES}); shorten it"
            ));
        }
        problem
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
                    Placeholder::Node => key.write_str(&escaped(&ctx.node)),
                    Placeholder::Pod => key.write_str(&escaped_opt(ctx.pod.as_deref())),
                    Placeholder::Namespace => key.write_str(&escaped_opt(ctx.namespace.as_deref())),
                    Placeholder::Cluster => key.write_str(&escaped_opt(ctx.cluster.as_deref())),
                    Placeholder::InstanceId => {
                        key.write_str(&escaped_opt(ctx.instance_id.as_deref()))
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

    /// The longest key prefix shared by every capture of `node` that
    /// started in `hour`: the template rendered up to the first placeholder
    /// whose value an hour and a node do not fix (`{mi}`, `{file}`, and
    /// `{cluster}` `{namespace}` `{pod}` `{instance_id}`, which a reader of
    /// the bucket does not know). For the default template that is the hour
    /// folder (`tcp-dumps/<node>/2026/11/27/14/`); for one that puts an
    /// unknown value first (`traces/{cluster}/{node}/…`) it is the static
    /// prefix, and a lister keeps what it finds with [`Self::capture_of_node`].
    pub fn hour_prefix(&self, node: &str, hour: DateTime<Utc>) -> String {
        let mut prefix = String::with_capacity(self.source.len() + 32);
        for segment in &self.segments {
            // Writing to a String cannot fail.
            let _ = match segment {
                Segment::Literal(text) => prefix.write_str(text),
                Segment::Placeholder(Placeholder::Node) => prefix.write_str(&escaped(node)),
                Segment::Placeholder(Placeholder::Year) => write!(prefix, "{}", hour.format("%Y")),
                Segment::Placeholder(Placeholder::Month) => {
                    write!(prefix, "{}", hour.format("%m"))
                }
                Segment::Placeholder(Placeholder::Day) => write!(prefix, "{}", hour.format("%d")),
                Segment::Placeholder(Placeholder::Hour) => write!(prefix, "{}", hour.format("%H")),
                Segment::Placeholder(_) => break,
            };
        }
        prefix
    }

    /// Reads a key back: the capture, when `key` is one this template
    /// renders for `node` (whatever the values a reader does not know);
    /// `None` for anything else under the same prefix (another node's
    /// captures, index objects, probes, another layout's objects). Time
    /// placeholders must agree with the capture's start, as [`Self::render`]
    /// writes them.
    pub fn capture_of_node(&self, key: &str, node: &str) -> Option<CaptureName> {
        let mut found = MatchedKey::default();
        if !match_segments(&self.segments, key, &escaped(node), &mut found) {
            return None;
        }
        let capture = found.capture?;
        let start = capture.start();
        let agrees = |p: Placeholder, value: &Option<String>| {
            let want = match p {
                Placeholder::Year => start.format("%Y"),
                Placeholder::Month => start.format("%m"),
                Placeholder::Day => start.format("%d"),
                Placeholder::Hour => start.format("%H"),
                _ => start.format("%M"),
            };
            value.as_ref().is_none_or(|v| *v == want.to_string())
        };
        let times = [
            (Placeholder::Year, &found.year),
            (Placeholder::Month, &found.month),
            (Placeholder::Day, &found.day),
            (Placeholder::Hour, &found.hour),
            (Placeholder::Minute, &found.minute),
        ];
        times.iter().all(|(p, v)| agrees(*p, v)).then_some(capture)
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

/// What [`match_segments`] read from a key.
#[derive(Debug, Clone, Default)]
struct MatchedKey {
    capture: Option<CaptureName>,
    year: Option<String>,
    month: Option<String>,
    day: Option<String>,
    hour: Option<String>,
    minute: Option<String>,
}

/// Matches `key` against `segments`, with backtracking: `{node}` is
/// `node` (already escaped), another value placeholder takes one or more
/// characters of its segment (never a `/`), a time placeholder its digits,
/// `{file}` a capture's file name. A `{file}` that ends the template also
/// takes folders before the name: the uploader never writes such keys, but
/// anyone with the node's write permission can, and a reader should not
/// hide what is in a node's folder.
fn match_segments(segments: &[Segment], key: &str, node: &str, found: &mut MatchedKey) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        return key.is_empty();
    };
    match first {
        Segment::Literal(text) => key
            .strip_prefix(text.as_str())
            .is_some_and(|after| match_segments(rest, after, node, found)),
        Segment::Placeholder(Placeholder::Node) => key
            .strip_prefix(node)
            .is_some_and(|after| match_segments(rest, after, node, found)),
        Segment::Placeholder(p) => {
            let digits = match p {
                Placeholder::Year => Some(4),
                Placeholder::Month | Placeholder::Day | Placeholder::Hour | Placeholder::Minute => {
                    Some(2)
                }
                _ => None,
            };
            let segment_end = match p {
                Placeholder::File if rest.is_empty() => key.len(),
                _ => key.find('/').unwrap_or(key.len()),
            };
            for end in (1..=segment_end).filter(|e| key.is_char_boundary(*e)) {
                let (value, after) = key.split_at(end);
                if digits
                    .is_some_and(|n| value.len() != n || !value.bytes().all(|b| b.is_ascii_digit()))
                {
                    continue;
                }
                let mut attempt = found.clone();
                let slot = match p {
                    Placeholder::Year => Some(&mut attempt.year),
                    Placeholder::Month => Some(&mut attempt.month),
                    Placeholder::Day => Some(&mut attempt.day),
                    Placeholder::Hour => Some(&mut attempt.hour),
                    Placeholder::Minute => Some(&mut attempt.minute),
                    Placeholder::File => {
                        match CaptureName::parse_ready(value.rsplit('/').next().unwrap_or(value)) {
                            Ok(name) if attempt.capture.is_none_or(|seen| seen == name) => {
                                attempt.capture = Some(name);
                                None
                            }
                            _ => continue,
                        }
                    }
                    // Values a reader does not know: any segment text.
                    Placeholder::Node
                    | Placeholder::Pod
                    | Placeholder::Namespace
                    | Placeholder::Cluster
                    | Placeholder::InstanceId => None,
                };
                if let Some(slot) = slot {
                    // A placeholder used twice must read the same both times.
                    if slot.as_ref().is_some_and(|seen| seen != value) {
                        continue;
                    }
                    *slot = Some(value.to_owned());
                }
                if match_segments(rest, after, node, &mut attempt) {
                    *found = attempt;
                    return true;
                }
            }
            false
        }
    }
}

fn escaped_opt(value: Option<&str>) -> String {
    escaped(value.unwrap_or(""))
}

/// A placeholder value as it goes into a key: a non-empty piece of one
/// segment that is never `.` or `..` and holds no `/` or control character.
/// Distinct values stay distinct (raw `%` is always encoded, and a cut value
/// carries a digest of the whole), so one node never writes into another's
/// keys. Values Kubernetes and EC2 give (DNS names, instance ids) pass as
/// they are.
fn escaped(value: &str) -> String {
    match value {
        // Unset: a node name can never be `_` (DNS-1123).
        "" => return "_".to_owned(),
        "." => return "%2E".to_owned(),
        ".." => return "%2E%2E".to_owned(),
        _ => {}
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '%' || c == '/' || c.is_control() {
            let mut utf8 = [0; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        } else {
            out.push(c);
        }
    }
    if out.len() > MAX_VALUE_BYTES {
        let digest = Sha256::digest(value.as_bytes());
        let mut cut = MAX_VALUE_BYTES - 17;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('~');
        for byte in &digest[..8] {
            let _ = write!(out, "{byte:02x}");
        }
    }
    out
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
    fn the_default_template_is_the_default_layout_under_tcp_dumps() {
        assert_eq!(DEFAULT_TEMPLATE, format!("tcp-dumps/{DEFAULT_LAYOUT}"));
    }

    #[test]
    fn static_prefix_stops_at_the_last_slash_before_a_placeholder() {
        let prefix = |t: &str| KeyTemplate::parse(t).unwrap().static_prefix().to_owned();
        assert_eq!(prefix(DEFAULT_TEMPLATE), "tcp-dumps/");
        assert_eq!(prefix("a/b/c-{node}/{file}"), "a/b/");
        assert_eq!(prefix("{node}/{file}"), "");
    }

    #[test]
    fn placeholder_values_cannot_add_segments_or_climb_out_of_the_prefix() {
        let t = KeyTemplate::parse(DEFAULT_TEMPLATE).unwrap();
        let name = capture("20261127T142503Z.pcap");
        let with_node = |node: &str| {
            let ctx = KeyContext {
                node: node.into(),
                ..ctx()
            };
            t.render(&ctx, &name)
        };
        for (node, segment) in [
            ("", "_"),
            (".", "%2E"),
            ("..", "%2E%2E"),
            ("../../etc", "..%2F..%2Fetc"),
            ("a//b", "a%2F%2Fb"),
            ("50%2F", "50%252F"),
            ("line\nbreak", "line%0Abreak"),
            ("...", "..."),
            ("ip-10-0-1-7.ec2.internal", "ip-10-0-1-7.ec2.internal"),
        ] {
            assert_eq!(
                with_node(node),
                format!("tcp-dumps/{segment}/2026/11/27/14/20261127T142503Z.pcap"),
                "node {node:?}"
            );
        }
        let ctx = KeyContext { pod: None, ..ctx() };
        let t = KeyTemplate::parse("{node}/{pod}/{file}").unwrap();
        assert_eq!(
            t.render(&ctx, &name),
            "ip-10-0-1-7.ec2.internal/_/20261127T142503Z.pcap"
        );
    }

    #[test]
    fn overlong_values_are_cut_with_a_digest_so_keys_fit_and_stay_distinct() {
        let t = KeyTemplate::parse(DEFAULT_TEMPLATE).unwrap();
        let name = capture("20261127T142503Z.pcap");
        let render = |node: String| {
            let ctx = KeyContext { node, ..ctx() };
            t.render(&ctx, &name)
        };
        let a = render(format!("{}a", "n".repeat(5000)));
        let b = render(format!("{}b", "n".repeat(5000)));
        assert_ne!(a, b);
        let segment = a.split('/').nth(1).unwrap();
        assert_eq!(segment.len(), MAX_VALUE_BYTES, "{a}");
        // Multi-byte characters are never split.
        let wide = render("é".repeat(200));
        assert!(wide.len() <= MAX_KEY_BYTES, "{wide}");
    }

    #[test]
    fn template_with_an_empty_dot_or_overlong_segment_is_refused_naming_it() {
        for (template, says) in [
            ("a//{node}/{file}", "empty segment"),
            ("{node}/{file}/", "empty segment"),
            ("../{node}/{file}", "\"..\""),
            ("{node}/./{file}", "\".\""),
            ("{node}/\u{7}/{file}", "control character"),
        ] {
            let err = KeyTemplate::parse(template).unwrap_err();
            assert!(
                matches!(err, KeyError::KeyTemplateShape { .. }),
                "{template}: {err}"
            );
            let message = err.to_string();
            assert!(message.contains(says), "{template}: {message}");
        }
        let long = format!("{}/{{node}}/{{file}}", "p".repeat(900));
        let message = KeyTemplate::parse(&long).unwrap_err().to_string();
        assert!(message.contains("1024 bytes"), "{message}");
        // Dots next to a placeholder, and longer dot runs, are fine.
        for template in ["{node}./{file}", ".../{node}/{file}", "./x/{node}/{file}"] {
            let parsed = KeyTemplate::parse(template);
            assert_eq!(
                parsed.is_ok(),
                !template.starts_with("./"),
                "{template}: {parsed:?}"
            );
        }
    }

    #[test]
    fn hour_prefix_renders_up_to_the_first_value_a_reader_does_not_know() {
        let hour = DateTime::parse_from_rfc3339("2026-11-27T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let prefix = |t: &str| KeyTemplate::parse(t).unwrap().hour_prefix("node-a", hour);
        assert_eq!(prefix(DEFAULT_TEMPLATE), "tcp-dumps/node-a/2026/11/27/14/");
        assert_eq!(
            prefix("t/{node}/{yyyy}{mm}{dd}/{hh}-{file}"),
            "t/node-a/20261127/14-"
        );
        assert_eq!(prefix("traces/{cluster}/{node}/{hh}/{file}"), "traces/");
        assert_eq!(prefix("x/{node}/{file}-{hh}"), "x/node-a/");
    }

    #[test]
    fn keys_read_back_give_the_node_and_capture_they_were_rendered_from() {
        for template in [
            DEFAULT_TEMPLATE,
            "traces/{cluster}/{node}/{yyyy}{mm}{dd}/{hh}-{file}",
            "{file}-{node}",
            "a/{node}-{pod}/{mi}/{file}",
        ] {
            let t = KeyTemplate::parse(template).unwrap();
            let name = capture("20261127T142503Z-0002.pcap");
            let key = t.render(&ctx(), &name);
            assert_eq!(
                t.capture_of_node(&key, "ip-10-0-1-7.ec2.internal"),
                Some(name),
                "{template}: {key}"
            );
            assert_eq!(t.capture_of_node(&key, "ip-10-0-1-7"), None, "{template}");
        }
        let t = KeyTemplate::parse("traces/{cluster}/{node}/{yyyy}{mm}{dd}/{hh}-{file}").unwrap();
        for other in [
            "traces/index/node=n/date=2026-11-27/hour=14/20261127T142503Z.pcap.jsonl.gz",
            "traces/.s3-tcpdump-layout.json",
            // The hour folder disagrees with the capture's start.
            "traces/prod/n/20261127/15-20261127T142503Z.pcap",
        ] {
            assert_eq!(t.capture_of_node(other, "n"), None, "{other}");
        }
    }

    #[test]
    fn a_file_that_ends_the_template_is_found_below_extra_folders() {
        let t = KeyTemplate::parse(DEFAULT_TEMPLATE).unwrap();
        assert_eq!(
            t.capture_of_node("tcp-dumps/n/2026/11/27/14/a/b/20261127T142503Z.pcap", "n"),
            Some(capture("20261127T142503Z.pcap"))
        );
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
