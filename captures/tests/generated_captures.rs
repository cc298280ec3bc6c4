//! `captures explain` and `fetch --merge` over generated input
//! (test-support's `generated`): random bytes, and well-formed frames under
//! every link type, intact or damaged in one place. Neither may panic; a
//! file that is not a pcap is refused by name; damage is reported where the
//! pcap check finds it, the whole packets before it are kept, and nothing
//! past it is read as packets.

use chrono::{TimeZone as _, Utc};
use proptest::prelude::*;
use spool::pcap::{DamageKind, check_bytes};
use test_support::generated::{capture_bytes, chunk_cuts, chunks};

use captures::explain::{ExplainError, Explainer, Scope};
use captures::merge::{MergeError, MergeInput, merge};
use captures::window::Window;

fn not_a_pcap(kind: &DamageKind) -> bool {
    matches!(kind, DamageKind::NotPcap | DamageKind::NoHeader)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn explaining_any_capture_reports_damage_where_the_check_finds_it(
        bytes in capture_bytes(),
        cuts in chunk_cuts(),
    ) {
        let summary = check_bytes(&bytes);
        let mut explainer = Explainer::new(Scope::default());
        let mut file = explainer.file("generated.pcap");
        for chunk in chunks(&bytes, &cuts) {
            if !file.feed(chunk) {
                break;
            }
        }
        match file.finish() {
            Err(ExplainError::NotPcap { name, .. }) => {
                prop_assert_eq!(name, "generated.pcap");
                prop_assert!(summary.damage.is_some_and(|d| not_a_pcap(&d.kind)));
            }
            Err(other) => prop_assert!(false, "unexpected error: {other}"),
            Ok(()) => {
                let report = explainer.finish();
                let read = &report.files[0];
                prop_assert_eq!(read.packets, summary.packets);
                match (&read.damage, &summary.damage) {
                    (None, None) => {}
                    (Some(said), Some(damage)) => {
                        prop_assert!(!not_a_pcap(&damage.kind));
                        let at = format!("({} bytes)", summary.whole_bytes);
                        prop_assert!(said.contains(&at), "{said} does not say {at}");
                    }
                    (said, found) => prop_assert!(false, "explain said {said:?}, the check found {found:?}"),
                }
            }
        }
    }

    #[test]
    fn merging_any_capture_keeps_exactly_its_whole_records_and_names_its_damage(
        bytes in capture_bytes(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("generated.pcap");
        std::fs::write(&input, &bytes).unwrap();
        let out = dir.path().join("merged.pcap");
        let always = Window::new(
            Utc.timestamp_opt(0, 0).unwrap(),
            Utc.timestamp_opt(i64::from(u32::MAX) + 1, 0).unwrap(),
        )
        .unwrap();
        let inputs = [MergeInput { path: input.clone(), node: "node".into() }];
        let summary = check_bytes(&bytes);
        match merge(&inputs, &always, &out) {
            Ok(merged) => {
                prop_assert_eq!(merged.packets, summary.packets);
                match (&merged.damaged[..], summary.damage) {
                    ([], None) => {}
                    ([damaged], Some(damage)) => {
                        prop_assert!(!not_a_pcap(&damage.kind));
                        prop_assert_eq!(&damaged.path, &input);
                        prop_assert_eq!(damaged.packets, summary.packets);
                        prop_assert_eq!(&damaged.damage, &damage.to_string());
                    }
                    (said, found) => prop_assert!(false, "merge said {said:?}, the check found {found:?}"),
                }
                let reread = check_bytes(&std::fs::read(&out).unwrap());
                prop_assert_eq!(reread.damage, None);
                prop_assert_eq!(reread.packets, summary.packets);
            }
            Err(MergeError::NotPcap { path, .. }) => {
                prop_assert_eq!(path, input);
                prop_assert!(summary.damage.is_some_and(|d| not_a_pcap(&d.kind)));
                prop_assert!(!out.exists(), "a refused merge left {}", out.display());
            }
            Err(other) => prop_assert!(false, "unexpected error: {other}"),
        }
    }
}
