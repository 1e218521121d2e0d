//! The one defuser of CSV cells that people open in a spreadsheet (feedback requests, the review
//! export, the CRM hand-off files).

/// A text as a CSV cell that a spreadsheet shows as text: a cell starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return would be read as a formula (names, reviews and messages are
/// anyone's words), so it gets a leading `'`, which spreadsheets hide.
pub fn defuse(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_never_start_a_formula() {
        assert_eq!(defuse("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(defuse("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(defuse("+1"), "'+1");
        assert_eq!(defuse("-1"), "'-1");
        assert_eq!(defuse("\tx"), "'\tx");
        assert_eq!(defuse("$500"), "$500");
        assert_eq!(defuse("Great food"), "Great food");
        assert_eq!(defuse(""), "");
    }
}
