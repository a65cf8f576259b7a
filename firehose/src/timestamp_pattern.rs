//! `!{timestamp:<pattern>}`: the Java `DateTimeFormatter` patterns Firehose prefixes use.
//!
//! Supported letters: `yyyy` `yy` (year), `MM` `M` (month), `dd` `d` (day), `HH` `H` (hour,
//! 0–23), `mm` (minute), `ss` (second), `SSS` (millisecond); text in single quotes and any
//! character that is not a letter are copied. Times are UTC. Source: AWS Firehose developer
//! guide, "Custom prefixes for Amazon S3 objects" (patterns follow `java.time.format.DateTimeFormatter`).

use chrono::{DateTime, Datelike, Timelike, Utc};

/// One piece of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Year4,
    Year2,
    Month2,
    Month,
    Day2,
    Day,
    Hour2,
    Hour,
    Minute2,
    Second2,
    Millis3,
}

/// A parsed timestamp pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampPattern {
    pieces: Vec<Piece>,
}

/// A pattern letter run Sluice does not support, or an unclosed quote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp pattern '{pattern}': {reason}")]
pub struct PatternError {
    /// The pattern.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

impl TimestampPattern {
    /// Parses `pattern`.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let err = |reason: String| PatternError { pattern: pattern.to_owned(), reason };
        let chars: Vec<char> = pattern.chars().collect();
        let mut pieces = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                let end = chars[i + 1..].iter().position(|&c| c == '\'').ok_or_else(|| err("unclosed quote".into()))?;
                let text: String = chars[i + 1..i + 1 + end].iter().collect();
                // '' is a quote character.
                pieces.push(Piece::Literal(if text.is_empty() { "'".into() } else { text }));
                i += end + 2;
                continue;
            }
            if !c.is_ascii_alphabetic() {
                pieces.push(Piece::Literal(c.to_string()));
                i += 1;
                continue;
            }
            let run = chars[i..].iter().take_while(|&&x| x == c).count();
            let piece = match (c, run) {
                ('y' | 'u', 4) => Piece::Year4,
                ('y' | 'u', 2) => Piece::Year2,
                ('M', 2) => Piece::Month2,
                ('M', 1) => Piece::Month,
                ('d', 2) => Piece::Day2,
                ('d', 1) => Piece::Day,
                ('H', 2) => Piece::Hour2,
                ('H', 1) => Piece::Hour,
                ('m', 2) => Piece::Minute2,
                ('s', 2) => Piece::Second2,
                ('S', 3) => Piece::Millis3,
                _ => return Err(err(format!("unsupported pattern letters '{}'", c.to_string().repeat(run)))),
            };
            pieces.push(piece);
            i += run;
        }
        Ok(Self { pieces })
    }

    /// Formats `ms` (ms since the Unix epoch) in UTC.
    pub fn format(&self, ms: u64) -> String {
        let t: DateTime<Utc> = DateTime::from_timestamp_millis(ms as i64).unwrap_or_default();
        let mut out = String::with_capacity(24);
        for p in &self.pieces {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Year4 => out.push_str(&format!("{:04}", t.year())),
                Piece::Year2 => out.push_str(&format!("{:02}", t.year() % 100)),
                Piece::Month2 => out.push_str(&format!("{:02}", t.month())),
                Piece::Month => out.push_str(&t.month().to_string()),
                Piece::Day2 => out.push_str(&format!("{:02}", t.day())),
                Piece::Day => out.push_str(&t.day().to_string()),
                Piece::Hour2 => out.push_str(&format!("{:02}", t.hour())),
                Piece::Hour => out.push_str(&t.hour().to_string()),
                Piece::Minute2 => out.push_str(&format!("{:02}", t.minute())),
                Piece::Second2 => out.push_str(&format!("{:02}", t.second())),
                Piece::Millis3 => out.push_str(&format!("{:03}", t.timestamp_subsec_millis())),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2015-09-12T00:46:58.771Z, the first wikiticker record.
    const T: u64 = 1_442_018_818_771;

    #[test]
    fn formats_firehose_default_and_custom_patterns() {
        assert_eq!(TimestampPattern::parse("yyyy/MM/dd/HH/").unwrap().format(T), "2015/09/12/00/");
        assert_eq!(TimestampPattern::parse("'year='yyyy'/month='M").unwrap().format(T), "year=2015/month=9");
        assert_eq!(TimestampPattern::parse("yy-MM-dd HH:mm:ss.SSS").unwrap().format(T), "15-09-12 00:46:58.771");
    }

    #[test]
    fn refuses_unknown_letters_and_open_quotes() {
        assert!(TimestampPattern::parse("yyyy-QQ").is_err());
        assert!(TimestampPattern::parse("'open").is_err());
        assert!(TimestampPattern::parse("yyy").is_err());
    }
}
