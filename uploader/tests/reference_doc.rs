//! docs/reference.md's uploader flag table and exit codes are the ones `--help`
//! describes.

use clap::CommandFactory;
use test_support::flag_table;

#[test]
fn reference_page_lists_every_uploader_flag_as_help_does() {
    let table = flag_table::flag_table(&uploader::cli::Cli::command());
    flag_table::assert_reference_block("uploader flags", &table);
}

#[test]
fn reference_page_gives_the_uploader_exit_codes_as_help_does() {
    let codes = flag_table::exit_codes(env!("CARGO_BIN_EXE_uploader"));
    flag_table::assert_reference_block("uploader exit codes", &codes);
}

#[test]
fn reference_page_lists_every_uploader_metric_as_the_registry_does() {
    let exposition = uploader::metrics::Metrics::new().encode().unwrap();
    flag_table::assert_reference_block("uploader metrics", &flag_table::metrics_table(&exposition));
}
