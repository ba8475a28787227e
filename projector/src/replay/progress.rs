//! Replay progress: a bar on a terminal, periodic log lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How replay reports its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A progress bar if stderr is a terminal, log lines otherwise.
    #[default]
    Auto,
    /// A progress line in the log every two seconds.
    Lines,
    /// Nothing (tests, library use).
    Hidden,
}

/// How often a plain progress line is written.
const LINE_INTERVAL: Duration = Duration::from_secs(2);

/// Tracks and shows how many events have been applied.
pub(crate) enum Progress {
    Bar(ProgressBar),
    Lines {
        total: u64,
        done: u64,
        started: Instant,
        last: Instant,
    },
    Hidden,
}

impl Progress {
    /// Starts reporting for `total` events.
    pub(crate) fn start(mode: ProgressMode, total: u64) -> Self {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Auto,
            ProgressMode::Auto => ProgressMode::Lines,
            other => other,
        };
        match mode {
            ProgressMode::Auto => {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "replay [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events \
                         ({per_sec}, ETA {eta})",
                    )
                    .expect("valid progress template"),
                );
                Progress::Bar(bar)
            }
            ProgressMode::Lines => {
                let now = Instant::now();
                tracing::info!(total, "replay started");
                Progress::Lines {
                    total,
                    done: 0,
                    started: now,
                    last: now,
                }
            }
            ProgressMode::Hidden => Progress::Hidden,
        }
    }

    /// Records `count` more applied events.
    pub(crate) fn advance(&mut self, count: u64) {
        match self {
            Progress::Bar(bar) => {
                if bar.position() + count > bar.length().unwrap_or(0) {
                    bar.set_length(bar.position() + count);
                }
                bar.inc(count);
            }
            Progress::Lines {
                total,
                done,
                started,
                last,
            } => {
                *done += count;
                *total = (*total).max(*done);
                if last.elapsed() >= LINE_INTERVAL {
                    *last = Instant::now();
                    let rate = rate(*done, started.elapsed());
                    let eta_s = if rate > 0.0 {
                        ((*total - *done) as f64 / rate).round() as u64
                    } else {
                        0
                    };
                    tracing::info!(
                        done = *done,
                        total = *total,
                        events_per_s = rate.round() as u64,
                        eta_s,
                        "replay progress"
                    );
                }
            }
            Progress::Hidden => {}
        }
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Events per second.
pub(crate) fn rate(events: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        events as f64 / seconds
    } else {
        0.0
    }
}
