//! [`Cell`]: one combination of a pipeline's dimension values, the unit a step runs in.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One combination of dimension values (`version=3.1, distro=debian`), in the pipeline's
/// dimension order. A step without dimensions has the empty cell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell(pub(crate) Vec<(String, String)>);

impl Cell {
    /// The value of `dimension` in this cell.
    pub fn get(&self, dimension: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(d, _)| d == dimension)
            .map(|(_, v)| v.as_str())
    }

    /// The (dimension, value) pairs.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// Whether the two cells agree on every dimension they share.
    pub fn agrees_with(&self, other: &Cell) -> bool {
        self.0
            .iter()
            .all(|(d, v)| other.get(d).is_none_or(|o| o == v))
    }

    /// The values joined by `-` (`3.1-debian`), or empty. A `-` inside a value is
    /// doubled (`x-y`, `z` is `x--y-z`; `x`, `y-z` is `x-y--z`), so two cells never share
    /// a key: values start with a letter or digit, so a run of dashes reads one way only.
    pub fn key(&self) -> String {
        self.0
            .iter()
            .map(|(_, v)| v.replace('-', "--"))
            .collect::<Vec<_>>()
            .join("-")
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(d, v)| format!("{d}={v}")).collect();
        f.write_str(&parts.join(", "))
    }
}

impl Serialize for Cell {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_pairs(&self.0, s)
    }
}

/// `(key, value)` pairs as a map, in their order (a `BTreeMap` would sort them).
pub(crate) fn serialize_pairs<S: serde::Serializer, V: Serialize>(
    pairs: &[(String, V)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(pairs.len()))?;
    for (k, v) in pairs {
        m.serialize_entry(k, v)?;
    }
    m.end()
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(d)?;
        Ok(Cell(map.into_iter().collect()))
    }
}

impl schemars::JsonSchema for Cell {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Cell".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        BTreeMap::<String, String>::json_schema(g)
    }
}
