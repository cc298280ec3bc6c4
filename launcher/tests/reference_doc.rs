//! docs/reference.md's launcher reference (flags, exit codes, pass-through options)
//! is the one `--help` and the code describe.

use clap::CommandFactory;
use test_support::flag_table;

#[test]
fn reference_page_lists_every_launcher_flag_as_help_does() {
    let table = flag_table::flag_table(&launcher::cli::Cli::command());
    flag_table::assert_reference_block("launcher flags", &table);
}

#[test]
fn reference_page_lists_the_pass_through_options_as_the_screen_does() {
    flag_table::assert_reference_block("pass-through options", &launcher::passthrough::reference());
}

#[test]
fn reference_page_gives_the_launcher_exit_codes_as_help_does() {
    let codes = flag_table::exit_codes(env!("CARGO_BIN_EXE_launcher"));
    flag_table::assert_reference_block("launcher exit codes", &codes);
}

#[test]
fn reference_page_lists_every_launcher_metric_as_the_registry_does() {
    let exposition = launcher::metrics::Metrics::new().encode().unwrap();
    flag_table::assert_reference_block("launcher metrics", &flag_table::metrics_table(&exposition));
}
