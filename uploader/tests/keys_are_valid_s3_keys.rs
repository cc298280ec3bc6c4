//! Property: every key rendered from any template the uploader accepts, with
//! any placeholder values (node, pod, namespace, cluster and instance id are
//! arbitrary strings from the environment or the network), is a valid S3 key:
//! non-empty, at most 1024 bytes, no leading `/`, no empty, `.` or `..`
//! segment, no control character.

#![allow(clippy::unwrap_used)]

use bucket::capture_keys::{KeyContext, KeyTemplate};
use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use spool::CaptureName;

/// S3's limit on a key's length in UTF-8 bytes.
const S3_KEY_MAX_BYTES: usize = 1024;

fn problem_with(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("empty key".into());
    }
    if key.len() > S3_KEY_MAX_BYTES {
        return Some(format!("{} bytes", key.len()));
    }
    if key.starts_with('/') {
        return Some("leading /".into());
    }
    if key.chars().any(char::is_control) {
        return Some("control character".into());
    }
    key.split('/')
        .find(|segment| matches!(*segment, "" | "." | ".."))
        .map(|segment| format!("segment {segment:?}"))
}

/// Template pieces: literals that can build every bad shape (`//`, `..`,
/// a leading or trailing `/`) and every placeholder, known or not.
fn template() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => "[a-z0-9._/-]{0,4}",
        1 => Just("/".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just(".".to_owned()),
        2 => prop::sample::select(vec![
            "{node}", "{pod}", "{namespace}", "{cluster}", "{instance_id}",
            "{yyyy}", "{mm}", "{dd}", "{hh}", "{mi}", "{file}",
        ])
        .prop_map(str::to_owned),
        1 => Just("{".to_owned()),
        1 => "\\PC{0,3}",
    ];
    (prop::collection::vec(piece, 0..10), any::<bool>()).prop_map(|(pieces, tail)| {
        let mut template = pieces.concat();
        // Most generated templates should be accepted, or the property
        // would only exercise refusals.
        if tail {
            template.push_str("/{node}/{file}");
        }
        template
    })
}

/// A placeholder value: anything, with the troublesome shapes made likely.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("/".to_owned()),
        "[./%]{1,4}",
        "[a-z0-9.-]{1,63}",
        any::<String>(),
        "[a-z./]{200,600}",
    ]
}

fn context() -> impl Strategy<Value = KeyContext> {
    (
        value(),
        prop::option::of(value()),
        prop::option::of(value()),
        prop::option::of(value()),
        prop::option::of(value()),
    )
        .prop_map(|(node, pod, namespace, cluster, instance_id)| KeyContext {
            node,
            pod,
            namespace,
            cluster,
            instance_id,
        })
}

fn capture() -> impl Strategy<Value = CaptureName> {
    (0i64..4_102_444_800, any::<u32>()).prop_map(|(secs, sequence)| {
        CaptureName::new(Utc.timestamp_opt(secs, 0).unwrap(), sequence)
    })
}

proptest! {
    #[test]
    fn every_rendered_key_is_a_valid_s3_key(
        source in template(),
        ctx in context(),
        name in capture(),
    ) {
        if let Ok(template) = KeyTemplate::parse(&source) {
            let key = template.render(&ctx, &name);
            prop_assert_eq!(problem_with(&key), None, "template {:?} rendered {:?}", source, key);
        }
    }

    #[test]
    fn the_default_template_renders_valid_keys_for_any_values(
        ctx in context(),
        name in capture(),
    ) {
        let template = KeyTemplate::parse(bucket::capture_keys::DEFAULT_TEMPLATE).unwrap();
        let key = template.render(&ctx, &name);
        prop_assert_eq!(problem_with(&key), None, "rendered {:?}", key);
    }

    /// Escaping must not merge two nodes' key spaces: different node names
    /// give different keys for the same capture.
    #[test]
    fn different_node_names_never_share_a_key(
        a in "\\PC{1,40}",
        b in "\\PC{1,40}",
        name in capture(),
    ) {
        prop_assume!(a != b);
        let template = KeyTemplate::parse(bucket::capture_keys::DEFAULT_TEMPLATE).unwrap();
        let render = |node: &str| template.render(
            &KeyContext { node: node.to_owned(), ..KeyContext::default() },
            &name,
        );
        prop_assert_ne!(render(&a), render(&b));
    }
}
