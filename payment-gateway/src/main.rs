//! The `payment-gateway` binary: parses the configuration and serves until Ctrl-C / SIGTERM.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = payment_gateway::Config::parse();
    let _telemetry = platform::telemetry::init("payment-gateway", &config.telemetry);
    payment_gateway::run(config, platform::shutdown::on_signal()).await
}
