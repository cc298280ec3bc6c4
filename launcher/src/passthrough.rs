//! Screening of the user's own tcpdump options.
//!
//! This is a security boundary: the options reach a process that can hold
//! `CAP_NET_RAW` on the node. Only options on the table below pass, each
//! re-emitted in a canonical form (`-s` `96`, `--nano`), so nothing glued or
//! abbreviated can smuggle in an option tcpdump would read differently.
//! Options that write or read files, run commands, change identity or run
//! the protocol dissectors (`--print`) are refused, naming the launcher flag
//! that owns the job where there is one.

use crate::errors::PassThroughError;

/// What the launcher does with one tcpdump option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Harmless: passes through.
    Allow,
    /// The capture interface: taken from here only when `--interface` is unset.
    Interface,
    /// Snapshot length: conflicts with `--snaplen`.
    Snaplen,
    /// Kernel buffer size: conflicts with `--buffer-kib`.
    BufferSize,
    /// Refused; the text says who owns the job instead.
    Refuse(&'static str),
}

#[derive(Debug)]
struct OptionSpec {
    short: Option<char>,
    long: Option<&'static str>,
    takes_value: bool,
    rule: Rule,
}

const OWNED_BY_SPOOL: &str = "it writes files; the launcher owns the output (--spool-dir)";
const OWNED_BY_ROTATE: &str = "it controls file rotation; use --rotate-seconds";
const OWNED_BY_SIZE: &str = "it controls file size; use --max-file-mb";
const RUNS_COMMANDS: &str =
    "it runs a command on each file; the launcher hands files to the uploader itself";
const CHANGES_IDENTITY: &str =
    "it changes the user tcpdump runs as; set the container's securityContext instead";
const READS_FILES: &str = "it reads files; the launcher only captures live traffic";
const FILTER_FILE: &str = "it reads the filter from a file; use --filter (CAPTURE_FILTER)";
const STOPS_CAPTURE: &str =
    "it makes tcpdump stop or print instead of capturing; the capture runs until the pod stops";
const SECRETS: &str = "it takes secrets or reads files; not supported in pass-through";
const RUNS_DISSECTORS: &str = "it runs tcpdump's protocol dissectors over untrusted traffic inside the process that holds NET_RAW, and its output goes nowhere; read the captures afterwards instead (tcpdump -r FILE)";

// The launcher flags that own what -i, -s and -B set.
const INTERFACE_FLAG: &str = "--interface (CAPTURE_INTERFACE)";
const SNAPLEN_FLAG: &str = "--snaplen (SNAPLEN)";
const BUFFER_FLAG: &str = "--buffer-kib (BUFFER_KIB)";

const fn spec(
    short: Option<char>,
    long: Option<&'static str>,
    takes_value: bool,
    rule: Rule,
) -> OptionSpec {
    OptionSpec {
        short,
        long,
        takes_value,
        rule,
    }
}

/// Every option tcpdump 4.99 knows, so that an abbreviated long option
/// resolves exactly as tcpdump's `getopt_long` would resolve it.
const TCPDUMP_OPTIONS: &[OptionSpec] = &[
    // Capture tuning and harmless printing switches.
    spec(Some('A'), None, false, Rule::Allow),
    spec(Some('a'), None, false, Rule::Allow),
    spec(Some('b'), None, false, Rule::Allow),
    spec(Some('e'), None, false, Rule::Allow),
    spec(Some('f'), None, false, Rule::Allow),
    spec(Some('I'), Some("monitor-mode"), false, Rule::Allow),
    spec(Some('K'), Some("dont-verify-checksums"), false, Rule::Allow),
    spec(Some('l'), None, false, Rule::Allow),
    spec(Some('n'), None, false, Rule::Allow),
    spec(Some('N'), None, false, Rule::Allow),
    spec(Some('O'), Some("no-optimize"), false, Rule::Allow),
    spec(Some('p'), Some("no-promiscuous-mode"), false, Rule::Allow),
    spec(Some('q'), None, false, Rule::Allow),
    spec(
        Some('S'),
        Some("absolute-tcp-sequence-numbers"),
        false,
        Rule::Allow,
    ),
    spec(Some('t'), None, false, Rule::Allow),
    spec(Some('u'), None, false, Rule::Allow),
    spec(Some('U'), Some("packet-buffered"), false, Rule::Allow),
    spec(Some('v'), None, false, Rule::Allow),
    spec(Some('x'), None, false, Rule::Allow),
    spec(Some('X'), None, false, Rule::Allow),
    spec(Some('#'), Some("number"), false, Rule::Allow),
    spec(Some('j'), Some("time-stamp-type"), true, Rule::Allow),
    spec(Some('Q'), Some("direction"), true, Rule::Allow),
    spec(Some('T'), None, true, Rule::Allow),
    spec(Some('y'), Some("linktype"), true, Rule::Allow),
    spec(None, Some("time-stamp-precision"), true, Rule::Allow),
    spec(None, Some("immediate-mode"), false, Rule::Allow),
    spec(None, Some("micro"), false, Rule::Allow),
    spec(None, Some("nano"), false, Rule::Allow),
    spec(None, Some("lengths"), false, Rule::Allow),
    spec(None, Some("fp-type"), false, Rule::Allow),
    // Owned by launcher flags.
    spec(Some('i'), Some("interface"), true, Rule::Interface),
    spec(Some('s'), Some("snapshot-length"), true, Rule::Snaplen),
    spec(Some('B'), Some("buffer-size"), true, Rule::BufferSize),
    // Refused.
    spec(Some('w'), None, true, Rule::Refuse(OWNED_BY_SPOOL)),
    spec(Some('W'), None, true, Rule::Refuse(OWNED_BY_ROTATE)),
    spec(Some('G'), None, true, Rule::Refuse(OWNED_BY_ROTATE)),
    spec(Some('C'), None, true, Rule::Refuse(OWNED_BY_SIZE)),
    spec(Some('z'), None, true, Rule::Refuse(RUNS_COMMANDS)),
    spec(
        Some('Z'),
        Some("relinquish-privileges"),
        true,
        Rule::Refuse(CHANGES_IDENTITY),
    ),
    spec(Some('r'), None, true, Rule::Refuse(READS_FILES)),
    spec(Some('V'), None, true, Rule::Refuse(READS_FILES)),
    spec(Some('F'), None, true, Rule::Refuse(FILTER_FILE)),
    spec(Some('E'), None, true, Rule::Refuse(SECRETS)),
    spec(Some('M'), None, true, Rule::Refuse(SECRETS)),
    spec(Some('m'), None, true, Rule::Refuse(SECRETS)),
    spec(Some('c'), None, true, Rule::Refuse(STOPS_CAPTURE)),
    spec(Some('d'), None, false, Rule::Refuse(STOPS_CAPTURE)),
    spec(
        Some('D'),
        Some("list-interfaces"),
        false,
        Rule::Refuse(STOPS_CAPTURE),
    ),
    spec(Some('h'), Some("help"), false, Rule::Refuse(STOPS_CAPTURE)),
    spec(Some('H'), None, false, Rule::Refuse(STOPS_CAPTURE)),
    spec(
        Some('J'),
        Some("list-time-stamp-types"),
        false,
        Rule::Refuse(STOPS_CAPTURE),
    ),
    spec(
        Some('L'),
        Some("list-data-link-types"),
        false,
        Rule::Refuse(STOPS_CAPTURE),
    ),
    spec(Some('Y'), None, false, Rule::Refuse(STOPS_CAPTURE)),
    spec(None, Some("version"), false, Rule::Refuse(STOPS_CAPTURE)),
    spec(None, Some("count"), false, Rule::Refuse(STOPS_CAPTURE)),
    // With -w, tcpdump parses packets only when told to print them too.
    spec(None, Some("print"), false, Rule::Refuse(RUNS_DISSECTORS)),
    spec(
        None,
        Some("print-sampling"),
        true,
        Rule::Refuse(RUNS_DISSECTORS),
    ),
];

/// The user's options, screened and in canonical form.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScreenedOptions {
    /// Options to pass to tcpdump, one word each.
    pub options: Vec<String>,
    /// Filter words found among the options (tcpdump joins them).
    pub filter_words: Vec<String>,
    /// `-i` given in pass-through.
    pub interface: Option<String>,
    /// `-s` given in pass-through.
    pub snaplen: Option<String>,
    /// `-B` given in pass-through.
    pub buffer_size: Option<String>,
}

/// Which launcher flags were set, for conflict checks.
#[derive(Debug, Default, Clone, Copy)]
pub struct OwnedFlags {
    pub interface: bool,
    pub snaplen: bool,
    pub buffer_kib: bool,
}

/// Screens `words` (already split as a shell would) against the table.
pub fn screen(words: &[String], owned: OwnedFlags) -> Result<ScreenedOptions, PassThroughError> {
    let mut screened = ScreenedOptions::default();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        if word == "--" {
            screened.filter_words.extend(words.by_ref().cloned());
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, glued_value) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (long, None),
            };
            let spec = resolve_long(name, word)?;
            let shown = format!("--{}", spec.long.unwrap_or(name));
            refuse_early(spec, &shown)?;
            let value = if spec.takes_value {
                Some(match glued_value {
                    Some(value) => value,
                    None => next_value(&mut words, &shown)?,
                })
            } else if glued_value.is_some() {
                return Err(PassThroughError::UnexpectedValue { option: shown });
            } else {
                None
            };
            apply(spec, &shown, value, owned, &mut screened)?;
        } else if let Some(cluster) = word.strip_prefix('-').filter(|c| !c.is_empty()) {
            // A getopt cluster: `-nv`, `-s96`, `-nz/evil.sh`.
            for (at, letter) in cluster.char_indices() {
                let shown = format!("-{letter}");
                let spec = TCPDUMP_OPTIONS
                    .iter()
                    .find(|s| s.short == Some(letter))
                    .ok_or_else(|| PassThroughError::Unknown {
                        option: shown.clone(),
                    })?;
                refuse_early(spec, &shown)?;
                if spec.takes_value {
                    let rest = &cluster[at + letter.len_utf8()..];
                    let value = if rest.is_empty() {
                        next_value(&mut words, &shown)?
                    } else {
                        rest.to_owned()
                    };
                    apply(spec, &shown, Some(value), owned, &mut screened)?;
                    break;
                }
                apply(spec, &shown, None, owned, &mut screened)?;
            }
        } else {
            screened.filter_words.push(word.clone());
        }
    }
    Ok(screened)
}

/// A refused option is refused whatever its value looks like (missing,
/// glued, `=`), so the message always says why it is refused.
fn refuse_early(spec: &OptionSpec, shown: &str) -> Result<(), PassThroughError> {
    match spec.rule {
        Rule::Refuse(reason) => Err(PassThroughError::Refused {
            option: shown.to_owned(),
            reason,
        }),
        _ => Ok(()),
    }
}

fn resolve_long(name: &str, word: &str) -> Result<&'static OptionSpec, PassThroughError> {
    let with_long = || TCPDUMP_OPTIONS.iter().filter(|s| s.long.is_some());
    if let Some(exact) = with_long().find(|s| s.long == Some(name)) {
        return Ok(exact);
    }
    let candidates: Vec<&OptionSpec> = with_long()
        .filter(|s| !name.is_empty() && s.long.is_some_and(|l| l.starts_with(name)))
        .collect();
    match candidates.as_slice() {
        [only] => Ok(only),
        [] => Err(PassThroughError::Unknown {
            option: word.to_owned(),
        }),
        _ => Err(PassThroughError::Ambiguous {
            option: word.to_owned(),
        }),
    }
}

fn next_value<'a>(
    words: &mut impl Iterator<Item = &'a String>,
    shown: &str,
) -> Result<String, PassThroughError> {
    words
        .next()
        .cloned()
        .ok_or_else(|| PassThroughError::MissingValue {
            option: shown.to_owned(),
        })
}

fn apply(
    spec: &OptionSpec,
    shown: &str,
    value: Option<String>,
    owned: OwnedFlags,
    screened: &mut ScreenedOptions,
) -> Result<(), PassThroughError> {
    let conflict = |flag: &'static str| PassThroughError::Conflict {
        option: shown.to_owned(),
        flag,
    };
    match spec.rule {
        Rule::Refuse(reason) => Err(PassThroughError::Refused {
            option: shown.to_owned(),
            reason,
        }),
        Rule::Interface if owned.interface => Err(conflict(INTERFACE_FLAG)),
        Rule::Snaplen if owned.snaplen => Err(conflict(SNAPLEN_FLAG)),
        Rule::BufferSize if owned.buffer_kib => Err(conflict(BUFFER_FLAG)),
        Rule::Interface => {
            screened.interface = value;
            Ok(())
        }
        Rule::Snaplen => {
            screened.snaplen = value;
            Ok(())
        }
        Rule::BufferSize => {
            screened.buffer_size = value;
            Ok(())
        }
        Rule::Allow => {
            match (spec.short, spec.long) {
                (Some(letter), _) => screened.options.push(format!("-{letter}")),
                (None, Some(long)) => {
                    let rendered = match &value {
                        Some(v) => format!("--{long}={v}"),
                        None => format!("--{long}"),
                    };
                    screened.options.push(rendered);
                    return Ok(());
                }
                (None, None) => {}
            }
            screened.options.extend(value);
            Ok(())
        }
    }
}

/// The reference page's (docs/reference.md) list of pass-through options, written from
/// [`TCPDUMP_OPTIONS`] so that it cannot drift from what [`screen`] does
/// (`launcher/tests/readme_reference.rs` compares the two).
pub fn reference() -> String {
    fn names(keep: impl Fn(Rule) -> bool) -> String {
        TCPDUMP_OPTIONS
            .iter()
            .filter(|s| keep(s.rule))
            .map(OptionSpec::reference_name)
            .collect::<Vec<_>>()
            .join(", ")
    }
    let mut out = format!("- allowed: {};\n", names(|rule| rule == Rule::Allow));
    out.push_str("- allowed unless the launcher flag that sets the same is given:\n");
    for spec in TCPDUMP_OPTIONS {
        let flag = match spec.rule {
            Rule::Interface => INTERFACE_FLAG,
            Rule::Snaplen => SNAPLEN_FLAG,
            Rule::BufferSize => BUFFER_FLAG,
            Rule::Allow | Rule::Refuse(_) => continue,
        };
        out.push_str(&format!("  - {}: {flag};\n", spec.reference_name()));
    }
    out.push_str("- refused, the error saying why:\n");
    // One line per reason, in the table's order.
    let mut reasons: Vec<&str> = Vec::new();
    for spec in TCPDUMP_OPTIONS {
        if let Rule::Refuse(reason) = spec.rule
            && !reasons.contains(&reason)
        {
            reasons.push(reason);
        }
    }
    for reason in reasons {
        let options = names(|rule| rule == Rule::Refuse(reason));
        out.push_str(&format!("  - {options}: {reason};\n"));
    }
    out
}

impl OptionSpec {
    /// `-j`/`--time-stamp-type` VALUE: how the reference names an option.
    fn reference_name(&self) -> String {
        let name = match (self.short, self.long) {
            (Some(c), Some(l)) => format!("`-{c}`/`--{l}`"),
            (Some(c), None) => format!("`-{c}`"),
            (None, Some(l)) => format!("`--{l}`"),
            (None, None) => String::new(),
        };
        if self.takes_value {
            format!("{name} VALUE")
        } else {
            name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        shell_words::split(line).unwrap()
    }

    fn screen_line(line: &str) -> Result<ScreenedOptions, PassThroughError> {
        screen(&words(line), OwnedFlags::default())
    }

    fn refused_option(line: &str) -> String {
        match screen_line(line) {
            Err(PassThroughError::Refused { option, .. }) => option,
            other => panic!("{line:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn passes_tuning_options_in_canonical_form() {
        let screened =
            screen_line("-nve -Q in -j adapter --time-stamp-precision nano -K -y EN10MB").unwrap();
        assert_eq!(
            screened.options,
            [
                "-n",
                "-v",
                "-e",
                "-Q",
                "in",
                "-j",
                "adapter",
                "--time-stamp-precision=nano",
                "-K",
                "-y",
                "EN10MB"
            ]
        );
        assert!(screened.filter_words.is_empty());
    }

    #[test]
    fn refuses_file_command_and_identity_options_in_every_form() {
        for (line, option) in [
            ("-w /tmp/x.pcap", "-w"),
            ("-r in.pcap", "-r"),
            ("-W 3", "-W"),
            ("-G 10", "-G"),
            ("-C 5", "-C"),
            ("-z /evil.sh", "-z"),
            ("-z/evil.sh", "-z"),
            ("-nz/evil.sh", "-z"),
            ("-Z root", "-Z"),
            ("-Zroot", "-Z"),
            ("--relinquish-privileges=root", "--relinquish-privileges"),
            ("--relinquish-privileges root", "--relinquish-privileges"),
            ("--relinq=root", "--relinquish-privileges"),
            ("-F filter.txt", "-F"),
            ("-V files.txt", "-V"),
            ("port 53 -z /evil.sh", "-z"),
        ] {
            assert_eq!(refused_option(line), option, "for {line:?}");
        }
    }

    #[test]
    fn refuses_print_and_print_sampling_in_every_spelling() {
        for (line, option) in [
            ("--print", "--print"),
            ("-n --print", "--print"),
            ("--print -n", "--print"),
            ("--print-sampling 10", "--print-sampling"),
            ("--print-sampling=10", "--print-sampling"),
            ("--print-samp=10", "--print-sampling"),
            ("--print-s 3", "--print-sampling"),
            ("-nv --print-sampling=1 port 53", "--print-sampling"),
        ] {
            assert_eq!(refused_option(line), option, "for {line:?}");
        }
        // tcpdump's getopt_long cannot tell these apart either.
        assert!(matches!(
            screen_line("--prin"),
            Err(PassThroughError::Ambiguous { .. })
        ));
        assert_eq!(refused_option("--print=yes"), "--print");
        assert_eq!(refused_option("--print-sampling"), "--print-sampling");
        let message = screen_line("--print").unwrap_err().to_string();
        assert!(
            message.contains("dissectors") && message.contains("tcpdump -r"),
            "{message}"
        );
    }

    #[test]
    fn refusal_names_the_option_and_the_owning_flag() {
        let message = screen_line("-G 30").unwrap_err().to_string();
        assert!(message.contains("-G"), "{message}");
        assert!(message.contains("--rotate-seconds"), "{message}");
        let message = screen_line("-z/evil.sh").unwrap_err().to_string();
        assert!(message.contains("-z"), "{message}");
    }

    #[test]
    fn words_after_double_dash_are_filter_words_even_if_they_look_like_options() {
        let screened = screen_line("-n -- port 53 and not -z").unwrap();
        assert_eq!(screened.options, ["-n"]);
        assert_eq!(screened.filter_words, ["port", "53", "and", "not", "-z"]);
    }

    #[test]
    fn interface_from_pass_through_only_when_flag_unset() {
        assert_eq!(
            screen_line("-i lo").unwrap().interface.as_deref(),
            Some("lo")
        );
        let owned = OwnedFlags {
            interface: true,
            ..OwnedFlags::default()
        };
        let err = screen(&words("-ilo"), owned).unwrap_err().to_string();
        assert!(err.contains("--interface"), "{err}");
    }

    #[test]
    fn snaplen_conflicts_with_flag() {
        let owned = OwnedFlags {
            snaplen: true,
            ..OwnedFlags::default()
        };
        assert!(matches!(
            screen(&words("-s 96"), owned),
            Err(PassThroughError::Conflict { .. })
        ));
        assert_eq!(screen_line("-s96").unwrap().snaplen.as_deref(), Some("96"));
    }

    #[test]
    fn unknown_ambiguous_and_incomplete_options_are_refused() {
        assert!(matches!(
            screen_line("-k"),
            Err(PassThroughError::Unknown { .. })
        ));
        assert!(matches!(
            screen_line("--no-such-thing"),
            Err(PassThroughError::Unknown { .. })
        ));
        assert!(matches!(
            screen_line("--li"),
            Err(PassThroughError::Ambiguous { .. })
        ));
        assert!(matches!(
            screen_line("-Q"),
            Err(PassThroughError::MissingValue { .. })
        ));
        assert!(matches!(
            screen_line("--nano=1"),
            Err(PassThroughError::UnexpectedValue { .. })
        ));
    }

    /// Properties: refused options are generated from [`TCPDUMP_OPTIONS`]
    /// itself in every spelling tcpdump's getopt would accept, mixed with
    /// allowed options and filter words, split as words or quoted inside
    /// `TCPDUMP_ARGS`.
    mod properties {
        use super::*;
        use crate::cli::Cli;
        use crate::errors::LaunchError;
        use crate::plan::Plan;
        use proptest::prelude::*;

        fn refused() -> Vec<&'static OptionSpec> {
            TCPDUMP_OPTIONS
                .iter()
                .filter(|s| matches!(s.rule, Rule::Refuse(_)))
                .collect()
        }

        /// Allowed short options without a value: what a cluster can hold
        /// before the refused letter.
        fn cluster_letters() -> Vec<char> {
            TCPDUMP_OPTIONS
                .iter()
                .filter(|s| s.rule == Rule::Allow && !s.takes_value)
                .filter_map(|s| s.short)
                .collect()
        }

        /// Every abbreviation getopt_long resolves to `long`: an exact name,
        /// or a prefix no other long option starts with.
        fn abbreviations(long: &'static str) -> Vec<&'static str> {
            let longs: Vec<&str> = TCPDUMP_OPTIONS.iter().filter_map(|s| s.long).collect();
            (1..=long.len())
                .map(|end| &long[..end])
                .filter(|prefix| {
                    if longs.contains(prefix) {
                        *prefix == long
                    } else {
                        longs.iter().filter(|l| l.starts_with(*prefix)).count() == 1
                    }
                })
                .collect()
        }

        /// A refused option spelled as a user might: words, and the name
        /// the refusal must give.
        fn refused_spelling() -> impl Strategy<Value = (Vec<String>, String)> {
            (
                prop::sample::select(refused()),
                any::<prop::sample::Index>(),
                prop::sample::subsequence(cluster_letters(), 0..3),
                "[ -~]{0,6}",
                0u8..4,
            )
                .prop_map(|(spec, pick, before, value, form)| {
                    let value = if value.is_empty() {
                        "x".to_owned()
                    } else {
                        value
                    };
                    let mut spellings: Vec<(Vec<String>, String)> = Vec::new();
                    if let Some(c) = spec.short {
                        let cluster: String = before.iter().collect();
                        let shown = format!("-{c}");
                        spellings
                            .push((vec![format!("-{cluster}{c}"), value.clone()], shown.clone()));
                        spellings.push((vec![format!("-{cluster}{c}{value}")], shown.clone()));
                        spellings.push((vec![format!("-{c}={value}")], shown.clone()));
                        spellings.push((vec![format!("-{c}")], shown));
                    }
                    if let Some(long) = spec.long {
                        let shown = format!("--{long}");
                        for name in abbreviations(long) {
                            let words = match form {
                                0 => vec![format!("--{name}")],
                                1 => vec![format!("--{name}={value}")],
                                _ => vec![format!("--{name}"), value.clone()],
                            };
                            spellings.push((words, shown.clone()));
                        }
                    }
                    spellings.swap_remove(pick.index(spellings.len()))
                })
        }

        /// Allowed options (with values that may look like anything, even
        /// `-w`) and filter words; none of them is an error.
        fn harmless_words() -> impl Strategy<Value = Vec<String>> {
            let allowed: Vec<&'static OptionSpec> = TCPDUMP_OPTIONS
                .iter()
                .filter(|s| !matches!(s.rule, Rule::Refuse(_)))
                .collect();
            let unit = prop_oneof![
                (prop::sample::select(allowed), "[ -~]{1,6}", any::<bool>()).prop_map(
                    |(spec, value, glued)| match (spec.short, spec.long, spec.takes_value) {
                        (Some(c), _, false) => vec![format!("-{c}")],
                        (Some(c), _, true) if glued => vec![format!("-{c}{value}")],
                        (Some(c), _, true) => vec![format!("-{c}"), value],
                        (None, Some(l), false) => vec![format!("--{l}")],
                        (None, Some(l), true) => vec![format!("--{l}={value}")],
                        (None, None, _) => Vec::new(),
                    }
                ),
                "[a-z0-9]{1,6}".prop_map(|word| vec![word]),
            ];
            prop::collection::vec(unit, 0..5).prop_map(|units| units.concat())
        }

        /// Words with a refused option somewhere among harmless ones.
        fn line_with_refused() -> impl Strategy<Value = (Vec<String>, String)> {
            (harmless_words(), refused_spelling(), harmless_words()).prop_map(
                |(mut words, (refused, shown), after)| {
                    words.extend(refused);
                    words.extend(after);
                    (words, shown)
                },
            )
        }

        /// Quotes `words` into one line the way a user might write
        /// TCPDUMP_ARGS: each character bare, backslashed, in single or in
        /// double quotes, picked by `styles`.
        fn quoted(words: &[String], styles: &[u8]) -> String {
            let mut style = styles.iter().cycle();
            let mut line = Vec::new();
            for word in words {
                if word.is_empty() {
                    line.push("''".to_owned());
                    continue;
                }
                let mut out = String::new();
                for c in word.chars() {
                    let bare = c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c);
                    match style.next().copied().unwrap_or(0) {
                        0 if bare => out.push(c),
                        1 if c != '\n' => {
                            out.push('\\');
                            out.push(c);
                        }
                        0..=2 if c != '\'' => {
                            out.push('\'');
                            out.push(c);
                            out.push('\'');
                        }
                        _ => {
                            out.push('"');
                            if "\"\\$`".contains(c) {
                                out.push('\\');
                            }
                            out.push(c);
                            out.push('"');
                        }
                    }
                }
                line.push(out);
            }
            line.join(" ")
        }

        fn cli(line: Option<String>, trailing: Vec<String>) -> Cli {
            Cli {
                spool_dir: "/spool".into(),
                interface: None,
                rotate_seconds: 60,
                max_file_mb: 100,
                snaplen: None,
                buffer_kib: None,
                filter: None,
                capture_own_uploads: false,
                s3_endpoint_url: None,
                capture_credential_endpoints: false,
                // Never run: any executable file will do.
                tcpdump: Some(std::env::current_exe().unwrap()),
                max_spool_mb: 2048,
                probe: false,
                metrics_addr: ([127, 0, 0, 1], 0).into(),
                stats_interval_ms: 5_000,
                capture_mode: crate::cli::CaptureMode::Buffered,
                tcpdump_args: line,
                check: true,
                tcpdump_options: trailing,
            }
        }

        /// Reads `args` the way tcpdump's getopt does and returns the
        /// refused options in it; panics on anything the table does not
        /// know or a word that would be read as a filter before `--`.
        fn refused_in(args: &[String]) -> Vec<String> {
            let mut found = Vec::new();
            let mut words = args.iter();
            while let Some(word) = words.next() {
                if word == "--" {
                    assert!(words.len() <= 1, "more than the filter after --: {args:?}");
                    break;
                }
                let spec = if let Some(long) = word.strip_prefix("--") {
                    let name = long.split_once('=').map_or(long, |(n, _)| n);
                    let spec = TCPDUMP_OPTIONS.iter().find(|s| s.long == Some(name));
                    let spec = spec.unwrap_or_else(|| panic!("{word:?} in {args:?}"));
                    // Canonical long options carry their value after `=`.
                    assert_eq!(spec.takes_value, long.contains('='), "{word:?}");
                    spec
                } else {
                    let mut letters = word.strip_prefix('-').map(str::chars).into_iter().flatten();
                    let (Some(letter), None) = (letters.next(), letters.next()) else {
                        panic!("{word:?} is not one option in {args:?}");
                    };
                    let spec = TCPDUMP_OPTIONS.iter().find(|s| s.short == Some(letter));
                    let spec = spec.unwrap_or_else(|| panic!("{word:?} in {args:?}"));
                    if spec.takes_value {
                        assert!(words.next().is_some(), "{word:?} without value in {args:?}");
                    }
                    spec
                };
                if matches!(spec.rule, Rule::Refuse(_)) {
                    found.push(word.clone());
                }
            }
            found
        }

        proptest! {
            #[test]
            fn a_refused_option_in_any_spelling_is_refused_by_name(
                (words, shown) in line_with_refused(),
            ) {
                match screen(&words, OwnedFlags::default()) {
                    Err(PassThroughError::Refused { option, .. }) => {
                        prop_assert_eq!(option, shown, "words {:?}", words);
                    }
                    other => prop_assert!(false, "{:?} gave {:?}", words, other),
                }
            }

            #[test]
            fn a_refused_option_quoted_inside_tcpdump_args_never_reaches_tcpdump(
                (words, shown) in line_with_refused(),
                styles in prop::collection::vec(0u8..4, 1..16),
                split in any::<prop::sample::Index>(),
            ) {
                // Part in TCPDUMP_ARGS, the rest after `--` on the command line.
                let at = split.index(words.len() + 1);
                let line = quoted(&words[..at], &styles);
                let split_back = shell_words::split(&line).ok();
                prop_assert_eq!(split_back.as_deref(), Some(&words[..at]));
                match Plan::from_cli(cli(Some(line.clone()), words[at..].to_vec())) {
                    Err(LaunchError::PassThrough(PassThroughError::Refused { option, .. })) => {
                        prop_assert_eq!(option, shown, "line {:?}", line);
                    }
                    other => prop_assert!(false, "{:?} gave {:?}", line, other.map(|p| p.tcpdump_args)),
                }
            }

            /// Whatever the words, tcpdump gets no refused option but the
            /// launcher's own `-w`, `-G` and `-C` (and `-d` in the preflight).
            #[test]
            fn tcpdump_gets_no_refused_option_whatever_the_words(
                words in prop::collection::vec(
                    prop_oneof![
                        refused_spelling().prop_map(|(words, _)| words),
                        harmless_words(),
                        Just(vec!["--".to_owned()]),
                        "-{0,2}[ -~]{0,8}".prop_map(|w| vec![w]),
                        any::<String>().prop_map(|w| vec![w]),
                    ],
                    0..6,
                ).prop_map(|units| units.concat()),
                styles in prop::collection::vec(0u8..4, 1..16),
                split in any::<prop::sample::Index>(),
            ) {
                let at = split.index(words.len() + 1);
                let line = quoted(&words[..at], &styles);
                if let Ok(plan) = Plan::from_cli(cli(Some(line), words[at..].to_vec())) {
                    prop_assert_eq!(refused_in(&plan.tcpdump_args), ["-w", "-G", "-C"]);
                    prop_assert_eq!(refused_in(&plan.preflight_args), ["-d"]);
                    // The launcher's own options end the list, before the filter.
                    let end = plan.tcpdump_args.len() - if plan.filter.is_empty() { 0 } else { 2 };
                    let tail: Vec<&str> = plan.tcpdump_args[end - 6..end]
                        .iter()
                        .map(String::as_str)
                        .collect();
                    let output = plan.spool.active().join(spool::TCPDUMP_FILE_PATTERN);
                    prop_assert_eq!(
                        tail,
                        ["-w", &*output.to_string_lossy(), "-G", "60", "-C", "100"]
                    );
                }
            }
        }
    }
}
