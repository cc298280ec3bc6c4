//! The README's uploader flag table is the one `--help` describes.

#[path = "../../tests/support/flag_table.rs"]
mod flag_table;

use clap::CommandFactory;

#[test]
fn readme_lists_every_uploader_flag_as_help_does() {
    let table = flag_table::flag_table(&uploader::cli::Cli::command());
    flag_table::assert_readme_block("uploader flags", &table);
}
