//! `saga-worker`: the order saga, and its dead-letter CLI.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    saga::main(saga::Cli::parse()).await
}
