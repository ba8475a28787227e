//! Facts about the machine and the code a run measured.

use serde::Serialize;
use sqlx::PgPool;

/// Where and on what a run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `git rev-parse HEAD`.
    pub commit: String,
    /// Whether the work tree had uncommitted changes.
    pub dirty: bool,
    /// `uname -a`.
    pub uname: String,
    /// CPUs available to this process.
    pub nproc: usize,
    /// `MemTotal` of /proc/meminfo, in MiB.
    pub memory_mib: u64,
    /// `SELECT version()`.
    pub postgres: String,
    /// The broker's version, from the jars of the running broker.
    pub kafka: String,
    /// Build profile of this binary.
    pub profile: &'static str,
}

impl Machine {
    /// Collects the facts (unknown ones say so).
    pub async fn collect(pool: Option<&PgPool>) -> Self {
        let postgres = match pool {
            Some(pool) => sqlx::query_scalar("SELECT version()")
                .fetch_one(pool)
                .await
                .unwrap_or_else(|e| format!("unknown ({e})")),
            None => "unknown".into(),
        };
        Self {
            commit: output("git", &["rev-parse", "HEAD"]),
            dirty: !output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty(),
            uname: output("uname", &["-a"]),
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_mib: memory_mib().unwrap_or(0),
            postgres,
            kafka: kafka_version().unwrap_or_else(|| "unknown".into()),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }
}

fn output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn memory_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The version in the name of the `kafka_<scala>-<version>.jar` on the
/// classpath of a running `kafka.Kafka` process on this machine.
fn kafka_version() -> Option<String> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args.iter().any(|a| a == "kafka.Kafka") {
            continue;
        }
        let classpath = args
            .iter()
            .position(|a| a == "-cp" || a == "-classpath")
            .and_then(|i| args.get(i + 1))?;
        for dir in classpath.split(':') {
            let dir = dir.trim_end_matches('*');
            for jar in std::fs::read_dir(dir).ok()?.flatten() {
                let name = jar.file_name().to_string_lossy().into_owned();
                if let Some(version) = jar_version(&name) {
                    return Some(version);
                }
            }
        }
    }
    None
}

/// `kafka_2.13-4.1.1.jar` → `4.1.1`.
fn jar_version(name: &str) -> Option<String> {
    let rest = name.strip_prefix("kafka_")?.strip_suffix(".jar")?;
    let (_, version) = rest.split_once('-')?;
    version
        .chars()
        .next()?
        .is_ascii_digit()
        .then(|| version.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_broker_version_comes_from_the_server_jar_name() {
        assert_eq!(
            super::jar_version("kafka_2.13-4.1.1.jar").as_deref(),
            Some("4.1.1")
        );
        assert_eq!(super::jar_version("kafka-clients-4.1.1.jar"), None);
        assert_eq!(
            super::jar_version("kafka_2.13-4.1.1-test.jar").as_deref(),
            Some("4.1.1-test")
        );
    }
}
