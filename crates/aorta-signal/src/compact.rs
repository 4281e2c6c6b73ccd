//! Compact serde form of the sample buffers that online state checkpoints
//! (beat-classifier rings and templates, signal-quality rings): a base64
//! string (standard alphabet, padded) of the values' IEEE-754 little-endian
//! bytes, 8 per value — about 11 characters a value instead of the ~19 of a
//! JSON number, exact (every bit, NaN included). Reading also accepts the
//! plain sequence of numbers, so checkpoints written before this form load.

use base64::Engine as _;
use serde::de::{Error as _, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

/// Most values read back (a guard against a hostile length; the largest
/// buffer here is a few seconds at 10 kHz).
pub const MAX_VALUES: usize = 1 << 20;

/// Serialises `v` as base64 of its little-endian bytes.
pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
    let mut bytes = Vec::with_capacity(v.len() * 8);
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Reads the base64 form, or a sequence of numbers.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    d.deserialize_any(F64s)
}

struct F64s;

impl<'de> Visitor<'de> for F64s {
    type Value = Vec<f64>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("base64 of little-endian f64 values, or a sequence of numbers")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Vec<f64>, E> {
        if s.len() / 4 * 3 / 8 > MAX_VALUES {
            return Err(E::custom("too many values"));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(E::custom)?;
        if bytes.len() % 8 != 0 {
            return Err(E::custom("not a whole number of f64 values"));
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b)
            })
            .collect())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<f64>, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_VALUES));
        // `null` (how JSON writes NaN) reads as NaN.
        while let Some(x) = seq.next_element::<Option<f64>>()? {
            if v.len() >= MAX_VALUES {
                return Err(A::Error::custom("too many values"));
            }
            v.push(x.unwrap_or(f64::NAN));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize, Debug)]
    struct T {
        #[serde(with = "super")]
        v: Vec<f64>,
    }

    #[test]
    fn exact_and_compact_and_reads_the_old_form() {
        let v = vec![0.0, -1.5, 1e-300, f64::MAX, f64::NAN, 0.1 + 0.2];
        let json = serde_json::to_string(&T { v: v.clone() }).unwrap();
        assert!(json.len() < 80, "{json}");
        let back: T = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        let old: T = serde_json::from_str(r#"{"v":[1.0,2.5,null]}"#).unwrap();
        assert_eq!(old.v[..2], [1.0, 2.5]);
        assert!(old.v[2].is_nan());
        for bad in [
            r#"{"v":"AAAA"}"#,
            r#"{"v":"!!"}"#,
            r#"{"v":3}"#,
            r#"{"v":["x"]}"#,
        ] {
            assert!(serde_json::from_str::<T>(bad).is_err(), "{bad}");
        }
    }
}
