//! `wfctl`: the command-line tool of the `workflow` crate. It lists, shows and manages workflow
//! instances and schedules, either on the store itself (`--database-url`, SQLite or PostgreSQL,
//! through a `Client` without a runtime) or through a server that mounts the HTTP router
//! (`--http`). Run `wfctl --help` for the commands, the backends and the exit codes.
//!
//! - `cli.rs`: the command line (clap);
//! - `commands.rs`: each command, written once against `backend::Backend`;
//! - `backend/`: the database and HTTP backends, answering with the rows of `model.rs`;
//! - `output.rs`: tables for people; `error.rs`: errors and exit codes.

mod backend;
mod cli;
mod commands;
mod error;
mod model;
mod output;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::error::CliError;

fn main() -> ExitCode {
    // Usage errors, --help and --version exit here (2 for a usage error, as clap does).
    let cli = cli::Cli::parse();
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::failure(format!("cannot start the async runtime: {error}")))
        .and_then(|runtime| runtime.block_on(commands::run(cli)));
    match outcome {
        Ok(text) => print(&text),
        Err(error) => {
            eprintln!("wfctl: {error}");
            ExitCode::from(error.code())
        }
    }
}

/// Writes the command's output; a reader that went away (`wfctl list | head`) is no failure.
fn print(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wfctl: cannot write the output: {error}");
            ExitCode::FAILURE
        }
    }
}
