//! Progress bars on stderr (bytes, rate, ETA); hidden unless the caller enabled them
//! (the binary does so only when stderr is a terminal).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-counting bar; `total` unknown draws a spinner with bytes and rate.
pub(crate) fn bar(enabled: bool, total: Option<u64>, msg: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let pb = match total {
        Some(n) => {
            let pb = ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            ) {
                pb.set_style(style.progress_chars("=> "));
            }
            pb
        }
        None => {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} {msg} {binary_bytes} {binary_bytes_per_sec}",
            ) {
                pb.set_style(style);
            }
            pb
        }
    };
    pb.set_message(msg.to_string());
    pb
}
