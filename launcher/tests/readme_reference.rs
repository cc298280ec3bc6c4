//! The README's launcher reference (flags, exit codes, pass-through options)
//! is the one `--help` and the code describe.

use clap::CommandFactory;
use test_support::flag_table;

#[test]
fn readme_lists_every_launcher_flag_as_help_does() {
    let table = flag_table::flag_table(&launcher::cli::Cli::command());
    flag_table::assert_readme_block("launcher flags", &table);
}

#[test]
fn readme_lists_the_pass_through_options_as_the_screen_does() {
    flag_table::assert_readme_block("pass-through options", &launcher::passthrough::reference());
}

#[test]
fn readme_gives_the_launcher_exit_codes_as_help_does() {
    let codes = flag_table::exit_codes(env!("CARGO_BIN_EXE_launcher"));
    flag_table::assert_readme_block("launcher exit codes", &codes);
}
