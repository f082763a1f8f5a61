//! Numbers and tables as every report prints them: values rounded to three
//! decimals in JSON, aligned Markdown tables on stdout and in table.md.

use std::fmt::Write as _;

/// Rounds to 3 decimals.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Renders rows as an aligned Markdown table; the first row is the header.
pub fn render_table(cells: &[Vec<String>]) -> String {
    let ncol = cells.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut width = vec![0usize; ncol];
    for r in cells {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (ri, r) in cells.iter().enumerate() {
        out.push('|');
        for (i, w) in width.iter().enumerate() {
            let c = r.get(i).map(String::as_str).unwrap_or("");
            let pad = w - c.chars().count();
            if i == 0 || ri == 0 {
                let _ = write!(out, " {c}{} |", " ".repeat(pad));
            } else {
                let _ = write!(out, " {}{c} |", " ".repeat(pad));
            }
        }
        out.push('\n');
        if ri == 0 {
            out.push('|');
            for (i, w) in width.iter().enumerate() {
                if i == 0 {
                    let _ = write!(out, "{}|", "-".repeat(w + 2));
                } else {
                    let _ = write!(out, "{}:|", "-".repeat(w + 1));
                }
            }
            out.push('\n');
        }
    }
    out
}
