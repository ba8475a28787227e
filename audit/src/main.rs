//! `audit`: checks a quiet system against its event log and prints counts
//! and violations. Exit status 0 when clean, 1 on any violation, 2 when the
//! system could not be read.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = audit::AuditConfig::parse();
    match audit::run(&config).await {
        Ok(report) => {
            print!("{report}");
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
