//! A JSON value read only to check it is JSON as jaq and arrow-json read it: every string
//! (and member name) is decoded, so an escape that is no character (`"\ud800"`) is refused
//! as they refuse it. serde's `IgnoredAny` and `RawValue` skip strings without decoding them
//! and let it through, which would make a record's fate depend on the path that read it.

use std::borrow::Cow;

/// Deserializing one makes serde_json check a whole value, decoding its strings.
pub(crate) struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Checked)
    }
}

impl<'de> serde::de::Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Cow<'de, str>>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::Checked;

    #[test]
    fn refuses_escapes_that_are_no_character_anywhere() {
        assert!(serde_json::from_str::<Checked>(r#"{"a": [1, {"b": "\ud83d\ude00"}], "c": null}"#).is_ok());
        for bad in [r#"{"a": ["\ud800"]}"#, r#"{"\udc00": 1}"#, r#"{"a": "\u12"}"#, r#"{"a": }"#] {
            assert!(serde_json::from_str::<Checked>(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(bad).is_ok() || !bad.contains("ud"), "{bad}");
        }
    }
}
