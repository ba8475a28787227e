//! The `console` binary: see the library for what it serves.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = web_console::Config::parse();
    let _telemetry = platform::telemetry::init("console", &config.telemetry);
    web_console::run(config, platform::shutdown::on_signal()).await
}
