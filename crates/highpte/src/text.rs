//! Text from users (workload names, paths, error messages quoting them) made safe for a
//! terminal: control characters escaped, very long names cut.

/// The most characters of a workload name the reports show.
pub const MAX_NAME_CHARS: usize = 64;

/// The most characters of one line of an error message.
pub const MAX_LINE_CHARS: usize = 1000;

/// `s` with every control character written as an escape (`\x1b`, `\n`, `\t`, ...), so that
/// it cannot move the cursor or change colours on a terminal; newlines kept if `keep_newlines`.
fn escape(s: &str, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\n' if keep_newlines => out.push('\n'),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// `s` cut to `max` characters, with how much was cut said at the end.
fn cut(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let kept: String = s.chars().take(max).collect();
    format!("{kept}... ({} more characters)", n - max)
}

/// A workload name as reports show it: escaped, at most [`MAX_NAME_CHARS`] characters.
pub fn display_name(name: &str) -> String {
    cut(&escape(name, false), MAX_NAME_CHARS)
}

/// An error message as printed on stderr: escaped (newlines kept), each line cut to
/// [`MAX_LINE_CHARS`] characters.
pub fn display_message(msg: &str) -> String {
    escape(msg, true)
        .lines()
        .map(|l| cut(l, MAX_LINE_CHARS))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `1st`, `2nd`, `3rd`, `4th`, ..., `11th`, `12th`, `13th`, `21st`, ...
pub fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_cut() {
        assert_eq!(display_name("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(
            display_name(&"x".repeat(70)),
            format!("{}... (6 more characters)", "x".repeat(64))
        );
        assert_eq!(display_message("one\ntwo\u{7}"), "one\ntwo\\u{7}");
    }

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .iter()
            .map(|&n| ordinal(n))
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }
}
