//! Long waits that say what they wait for: a store's shutdown can take
//! seconds while it makes the unflushed tail durable, and a silent
//! terminal looks hung.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mqlab_engine::Offsets;

/// How long a wait goes on before [`show_slow_wait`] says what it waits for.
pub const SLOW_WAIT: Duration = Duration::from_secs(1);

/// What a store's shutdown waits for: "<label>: making 123 MiB durable"
/// (what was appended but is not durable yet when it starts).
pub fn durable_message(label: &str, o: Offsets) -> String {
    let mib = o.written.saturating_sub(o.flushed) as f64 / (1024.0 * 1024.0);
    let mib = if mib < 10.0 {
        format!("{mib:.1}")
    } else {
        format!("{mib:.0}")
    };
    format!("{label}: making {mib} MiB durable at shutdown")
}

/// Runs `work`; when it takes longer than `after`, says on stderr what it
/// waits for: a spinner when stderr is a terminal, else one line when the
/// wait starts to be long and one when it ends.
pub fn show_slow_wait<T>(after: Duration, what: &str, work: impl FnOnce() -> T) -> T {
    let terminal = std::io::stderr().is_terminal();
    show_slow_wait_to(after, what, terminal, &mut std::io::stderr(), work)
}

/// [`show_slow_wait`] writing its lines to `sink` (not a terminal) or
/// drawing an indicatif spinner on stderr (`terminal`).
pub fn show_slow_wait_to<T>(
    after: Duration,
    what: &str,
    terminal: bool,
    sink: &mut (dyn Write + Send),
    work: impl FnOnce() -> T,
) -> T {
    let started = Instant::now();
    let (done, wait) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            if !matches!(wait.recv_timeout(after), Err(RecvTimeoutError::Timeout)) {
                return;
            }
            if terminal {
                let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template("{spinner} mqlab: {msg}... {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                pb.set_style(style);
                pb.set_message(what.to_string());
                pb.enable_steady_tick(Duration::from_millis(100));
                let _ = wait.recv();
                pb.finish_and_clear();
                let _ = writeln!(
                    sink,
                    "mqlab: {what}: done in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            } else {
                let _ = writeln!(sink, "mqlab: {what}...");
                let _ = wait.recv();
                let _ = writeln!(
                    sink,
                    "mqlab: {what}: done in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
        });
        let r = work();
        drop(done);
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_wait_says_what_it_waits_for() {
        let mut out = Vec::new();
        let r = show_slow_wait_to(
            Duration::from_millis(50),
            "x: making 3.0 MiB durable at shutdown",
            false,
            &mut out,
            || {
                std::thread::sleep(Duration::from_millis(300));
                7
            },
        );
        assert_eq!(r, 7);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "mqlab: x: making 3.0 MiB durable at shutdown...");
        assert!(lines[1].contains(": done in 0."), "{text}");
        // A short wait says nothing.
        let mut out = Vec::new();
        show_slow_wait_to(Duration::from_secs(5), "y", false, &mut out, || ());
        assert!(out.is_empty());
    }

    #[test]
    fn durable_message_names_the_backlog() {
        let o = Offsets {
            written: 300 << 20,
            committed: 300 << 20,
            flushed: 100 << 20,
            acked: 300 << 20,
        };
        assert_eq!(
            durable_message("async-pwrite", o),
            "async-pwrite: making 200 MiB durable at shutdown"
        );
        let o = Offsets {
            written: 3 << 19,
            ..Offsets::default()
        };
        assert_eq!(
            durable_message("s", o),
            "s: making 1.5 MiB durable at shutdown"
        );
    }
}
