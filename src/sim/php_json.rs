//! JSON as PHP's `json_encode` writes it: `/` escaped as `\/`, everything outside ASCII as
//! `\uXXXX` (UTF-16, with surrogate pairs).

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::Formatter;

#[derive(Debug, Default, Clone, Copy)]
pub struct PhpFormatter;

impl Formatter for PhpFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c == '/' || !c.is_ascii() {
                w.write_all(&fragment.as_bytes()[start..i])?;
                if c == '/' {
                    w.write_all(b"\\/")?;
                } else {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        write!(w, "\\u{unit:04x}")?;
                    }
                }
                start = i + c.len_utf8();
            }
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// Serializes `value` the way PHP would.
pub fn to_vec<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(1024);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PhpFormatter);
    value.serialize(&mut ser)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_like_php() {
        let out = super::to_vec(&["SIP/EX-1", "José 😀", "a\"b"]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"["SIP\/EX-1","Jos\u00e9 \ud83d\ude00","a\"b"]"#
        );
    }
}
