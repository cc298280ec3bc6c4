//! The `captures` command line: a thin edge over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(version, about = "Find, fetch, merge and explain packet captures")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The symptoms of intermittent connectivity in pcap files, worst first,
    /// with the time of each to jump to in Wireshark.
    Explain {
        /// pcap files (as written by tcpdump -w).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print JSON for scripts instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("captures: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Explain { files, json } => {
            let report = captures::explain(&files).context("explain")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", captures::explain::render_text(&report));
            }
        }
    }
    Ok(())
}
