//! Numbers and tables as every report writes them: values rounded to three
//! decimals in JSON, aligned Markdown tables on stdout and in table.md, and
//! the CSV files of time series (through the `csv` crate, both ways).

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

/// CSV text: `header`, then one line per row of already formatted fields.
pub fn csv_text<R, F>(header: &[&str], rows: R) -> String
where
    R: IntoIterator,
    R::Item: IntoIterator<Item = F>,
    F: AsRef<[u8]>,
{
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing into memory cannot fail.
    let _ = w.write_record(header);
    for r in rows {
        let _ = w.write_record(r);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// The `names` columns of CSV text with a header line, as numbers: one
/// entry per row in which every one of them parses; none when a column is
/// missing.
pub fn csv_columns(text: &str, names: &[&str]) -> Vec<Vec<f64>> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let Ok(header) = r.headers() else {
        return Vec::new();
    };
    let Some(idx) = names
        .iter()
        .map(|n| header.iter().position(|h| h == *n))
        .collect::<Option<Vec<usize>>>()
    else {
        return Vec::new();
    };
    r.records()
        .filter_map(|rec| {
            let rec = rec.ok()?;
            idx.iter()
                .map(|&i| rec.get(i)?.parse::<f64>().ok())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_text_is_plain_lines() {
        let text = csv_text(&["a", "b"], [["1", "2.500"], ["3", ""]]);
        assert_eq!(text, "a,b\n1,2.500\n3,\n");
        // A field that needs it is quoted, so the file stays parseable.
        assert_eq!(csv_text(&["k"], [["x,y"]]), "k\n\"x,y\"\n");
    }

    #[test]
    fn csv_columns_by_name() {
        let text = "t,skip,v\n0.5,x,2\n1.0,y,oops\n1.5,z,4\n";
        assert_eq!(
            csv_columns(text, &["v", "t"]),
            vec![vec![2.0, 0.5], vec![4.0, 1.5]]
        );
        assert!(csv_columns(text, &["missing"]).is_empty());
        assert!(csv_columns("", &["t"]).is_empty());
    }
}
