//! The `query-api` binary: see the library for what it serves.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = query_api::Config::parse();
    let _telemetry = platform::telemetry::init("query-api", &config.telemetry);
    query_api::run(config, platform::shutdown::on_signal()).await
}
