//! docs/reference.md's journal reference (flags, exit codes) is the one
//! `--help` and the code describe.

use clap::CommandFactory;
use test_support::flag_table;

#[test]
fn reference_page_lists_every_journal_flag_as_help_does() {
    let table = flag_table::flag_table(&journal::config::Cli::command());
    flag_table::assert_reference_block("journal flags", &table);
}

#[test]
fn reference_page_gives_the_journal_exit_codes_as_help_does() {
    let codes = flag_table::exit_codes(env!("CARGO_BIN_EXE_journal"));
    flag_table::assert_reference_block("journal exit codes", &codes);
}
