//! The `command-api` binary: parses the configuration and serves until Ctrl-C / SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = command_api::Config::parse();
    command_api::run(config, platform::shutdown::on_signal()).await
}
