//! `mqlab plot`: every chart the given result folders allow, whatever
//! made them (store runs and crashes, messaging runs, `mqlab delay`).

use std::path::{Path, PathBuf};

use anyhow::Result;

/// `mqlab plot`: draws into `out` and prints each file written.
pub fn cmd_plot(inputs: &[PathBuf], out: &Path) -> Result<()> {
    let mut files = crate::plot::runs::plot_runs(inputs, out)?;
    files.extend(crate::messaging::plot::draw_messaging_only(inputs, out)?);
    files.extend(crate::delay::charts::draw_delay_only(inputs, out)?);
    if files.is_empty() {
        anyhow::bail!("no summary.json, crashes.json or mqlab delay output found in the inputs");
    }
    for f in files {
        println!("{}", out.join(f).display());
    }
    Ok(())
}
