//! A small table that prints the same way on a terminal and in markdown.

/// A titled table of strings, rendered as an aligned markdown pipe table.
pub struct Table {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Lines printed under the table.
    pub notes: Vec<String>,
}

impl Table {
    /// An empty table.
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Self {
        Self {
            title: title.into(),
            headers: headers.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }
    /// Add a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
    /// Add a note line.
    pub fn note(&mut self, s: impl Into<String>) {
        self.notes.push(s.into());
    }

    /// Markdown: `### title`, the table, then the notes.
    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut w: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                w[i] = w[i].max(c.len());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, width) in w.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                if i == 0 {
                    s.push_str(&format!(" {c:<width$} |"));
                } else {
                    s.push_str(&format!(" {c:>width$} |"));
                }
            }
            s
        };
        let mut out = format!("### {}\n\n", self.title);
        out.push_str(&line(&self.headers));
        out.push('\n');
        out.push('|');
        for (i, width) in w.iter().enumerate() {
            if i == 0 {
                out.push_str(&format!(":{}|", "-".repeat(width + 1)));
            } else {
                out.push_str(&format!("{}:|", "-".repeat(width + 1)));
            }
        }
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for l in &self.notes {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

/// A count with thousands separators.
pub fn int(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A rate in millions with two decimals (`1.23 M`).
pub fn millions(v: f64) -> String {
    format!("{:.2} M", v / 1e6)
}

/// A ratio as a signed percentage.
pub fn pct(v: f64) -> String {
    format!("{:+.1}%", v * 100.0)
}
