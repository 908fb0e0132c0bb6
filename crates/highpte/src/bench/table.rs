//! A titled table of the bench, printed as markdown (on a terminal and in the report) with
//! comfy-table, the command's one table stack.

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

    /// Markdown: `### title`, the table (comfy-table's markdown preset, numbers right-aligned,
    /// the same table stack as every other table of the command), then the notes.
    pub fn render(&self) -> String {
        use comfy_table::{presets::ASCII_MARKDOWN, CellAlignment};
        let mut t = comfy_table::Table::new();
        t.load_preset(ASCII_MARKDOWN);
        t.set_header(&self.headers);
        for r in &self.rows {
            t.add_row(r);
        }
        for (i, col) in t.column_iter_mut().enumerate() {
            if i > 0 {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
        let mut out = format!("### {}\n\n{t}\n", self.title);
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
