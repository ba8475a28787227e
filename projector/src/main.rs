//! The `projector` binary: the live projector, or `projector replay`.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    projector::main(projector::Cli::parse()).await
}
