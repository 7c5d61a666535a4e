//! Output formatting shared by the commands: Docker-style tables, JSON as
//! `docker inspect` prints it, and the small conversions Docker's
//! formatters make (12-character ids, Go time strings, ellipses).

use std::io::Write;

use serde::Serialize;

/// Docker's tables go through Go's tabwriter with minwidth 10, padding 3:
/// every column but the last is as wide as its widest cell plus 3, and at
/// least 10; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    const MIN_WIDTH: usize = 10;
    const PADDING: usize = 3;
    let lines: Vec<Vec<&str>> = std::iter::once(headers.to_vec())
        .chain(rows.iter().map(|r| r.iter().map(String::as_str).collect()))
        .collect();
    let cols = headers.len();
    let width = |c: &str| c.chars().count();
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            lines
                .iter()
                .map(|l| l.get(i).map_or(0, |c| width(c)))
                .max()
                .unwrap_or(0)
                .saturating_add(PADDING)
                .max(MIN_WIDTH)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        for (i, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < line.len() {
                out.extend(std::iter::repeat_n(' ', widths[i] - width(cell)));
            }
        }
        out.push('\n');
    }
    out
}

/// Docker's short id (`stringid.TruncateID`).
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// JSON the way `docker inspect` prints it: indented by 4 spaces.
pub fn pretty_json<T: Serialize>(value: &T) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    value
        .serialize(&mut ser)
        .expect("serializing plain data cannot fail");
    let mut s = String::from_utf8(buf).expect("serde_json writes UTF-8");
    s.push('\n');
    s
}

/// RFC 3339 (`2025-01-02T03:04:05.123456789Z`) to Go's `time.Time.String()`
/// (`2025-01-02 03:04:05.123456789 +0000 UTC`), which Docker's `CreatedAt`
/// shows. Anything else is returned unchanged.
pub fn go_time(rfc3339: &str) -> String {
    match rfc3339.strip_suffix('Z') {
        Some(t) if t.contains('T') => format!("{} +0000 UTC", t.replacen('T', " ", 1)),
        _ => rfc3339.to_string(),
    }
}

/// Docker's `formatter.Ellipsis`: at most `max` characters, the last one
/// an ellipsis when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Bytes as Docker prints memory sizes (binary units, two decimals).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2}{}", UNITS[unit])
}

/// Writes to stdout, ignoring a closed pipe (`netd network ls | head`)
/// instead of panicking like `print!`.
pub fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

/// Writes one line to stderr.
pub fn err(s: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{s}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_like_docker_tabwriter() {
        let t = table(
            &["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
            &[
                vec![
                    "0123456789ab".into(),
                    "bridge".into(),
                    "bridge".into(),
                    "local".into(),
                ],
                vec![
                    "ba9876543210".into(),
                    "a-long-network".into(),
                    "null".into(),
                    "local".into(),
                ],
            ],
        );
        assert_eq!(
            t,
            "NETWORK ID     NAME             DRIVER    SCOPE\n\
             0123456789ab   bridge           bridge    local\n\
             ba9876543210   a-long-network   null      local\n"
        );
    }

    #[test]
    fn empty_tables_are_just_the_header_at_min_width() {
        // What docker 28 prints for an empty `network ls`.
        assert_eq!(
            table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &[]),
            "NETWORK ID   NAME      DRIVER    SCOPE\n"
        );
    }

    #[test]
    fn ids_are_cut_to_12() {
        assert_eq!(short_id(&"a".repeat(64)), "a".repeat(12));
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn json_is_indented_by_four() {
        let s = pretty_json(&vec![serde_json::json!({"A": 1})]);
        assert_eq!(s, "[\n    {\n        \"A\": 1\n    }\n]\n");
        assert_eq!(pretty_json(&Vec::<u8>::new()), "[]\n");
    }

    #[test]
    fn times_and_sizes_read_like_docker() {
        assert_eq!(
            go_time("2025-01-02T03:04:05.123456789Z"),
            "2025-01-02 03:04:05.123456789 +0000 UTC"
        );
        assert_eq!(go_time("weird"), "weird");
        assert_eq!(human_bytes(512), "512.00B");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.00GiB");
        assert_eq!(ellipsis("short", 20), "short");
        assert_eq!(
            ellipsis("abcdefghijklmnopqrstuvwxyz", 20),
            "abcdefghijklmnopqrs…"
        );
    }
}
