//! The two XML escapes the string builders need. Builders write XML by hand because the
//! output must be byte-exact (PlayReady canonical form, MPD fragments); parsing uses roxmltree.

/// Escapes character data: `&`, `<` and `>` (the last so `]]>` can never appear).
pub(crate) fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes a value for a double-quoted attribute.
pub(crate) fn escape_attr(s: &str) -> String {
    escape_text(s).replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_characters() {
        assert_eq!(escape_text("a&b<c>d\"e"), "a&amp;b&lt;c&gt;d\"e");
        assert_eq!(escape_attr("a&b\"c"), "a&amp;b&quot;c");
    }
}
