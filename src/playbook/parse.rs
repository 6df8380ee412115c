//! Reading a playbook from YAML text or from an inline JSON object, with errors that say
//! exactly where the problem is: `playbooks/x.yaml:7:29: steps[1].condition: ...`.
//!
//! Syntax and type errors come from `serde_yaml`, which knows the line and column. Semantic
//! errors (empty steps, duplicate names, a bad condition) are found after deserialising, on
//! plain Rust values; to point at them, the text is walked a second time along the field
//! path until the offending node is reached, and the YAML parser reports that node's mark.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::model::{self, InsideValue, PathSegment, Playbook, RawPlaybook, Violation};
use super::{InvalidPlaybook, PlaybookError, TextPosition};

/// Largest playbook accepted, in bytes; a real playbook is a few kilobytes, and the limit
/// keeps a hostile repository or message from making the worker parse megabytes of YAML.
pub const MAX_PLAYBOOK_BYTES: usize = 256 * 1024;

/// Parses and validates a playbook from YAML; `source` names it in errors (a path, usually).
pub fn parse_playbook(yaml: &str, source: &str) -> Result<Playbook, PlaybookError> {
    if yaml.len() > MAX_PLAYBOOK_BYTES {
        return Err(too_large(source, yaml.len()));
    }
    parse_text(yaml, source, true)
}

/// Parses and validates an inline playbook given as a JSON object (from a task message).
///
/// Errors name the field path but no line: the object has no text of its own.
pub fn playbook_from_json(value: &serde_json::Value, source: &str) -> Result<Playbook, PlaybookError> {
    // Re-expressing the object as YAML reuses one validation path, including serde_yaml's
    // tracking of the field path in type errors.
    let yaml = serde_yaml::to_string(value).map_err(|e| {
        PlaybookError::Invalid(InvalidPlaybook {
            origin: source.to_string(),
            position: None,
            field: None,
            message: format!("not representable as a playbook: {e}"),
        })
    })?;
    if yaml.len() > MAX_PLAYBOOK_BYTES {
        return Err(too_large(source, yaml.len()));
    }
    parse_text(&yaml, source, false)
}

fn too_large(source: &str, size: usize) -> PlaybookError {
    PlaybookError::TooLarge { path: source.to_string(), size: size as u64, max: MAX_PLAYBOOK_BYTES as u64 }
}

fn parse_text(yaml: &str, source: &str, with_positions: bool) -> Result<Playbook, PlaybookError> {
    let raw: RawPlaybook = serde_yaml::from_str(yaml).map_err(|e| from_serde(&e, source, with_positions))?;
    model::validate(raw).map_err(|v| from_violation(v, yaml, source, with_positions))
}

/// Moves serde_yaml's "at line L column C" suffix into the structured position.
fn from_serde(err: &serde_yaml::Error, source: &str, with_positions: bool) -> PlaybookError {
    let text = err.to_string();
    let location = err.location();
    let message = location
        .as_ref()
        .and_then(|l| text.strip_suffix(&format!(" at line {} column {}", l.line(), l.column())))
        .unwrap_or(&text)
        .to_string();
    let position =
        location.filter(|_| with_positions).map(|l| TextPosition { line: l.line(), column: l.column() });
    PlaybookError::Invalid(InvalidPlaybook { origin: source.to_string(), position, field: None, message })
}

fn from_violation(v: Violation, yaml: &str, source: &str, with_positions: bool) -> PlaybookError {
    let position = if with_positions { locate(yaml, &v.path) } else { None };
    let position = match (position, &v.inside_value) {
        (Some(p), Some(inside)) => Some(refine(yaml, p, inside)),
        (p, _) => p,
    };
    PlaybookError::Invalid(InvalidPlaybook {
        origin: source.to_string(),
        position,
        field: Some(model::render_path(&v.path)),
        message: v.message,
    })
}

/// Moves a scalar's position onto a character inside it, when the value sits on one line
/// as written (plain or simply quoted). Otherwise the scalar's own position is the best
/// honest answer.
fn refine(yaml: &str, at: TextPosition, inside: &InsideValue) -> TextPosition {
    let Some(line) = yaml.lines().nth(at.line - 1) else {
        return at;
    };
    let rest: Vec<char> = line.chars().skip(at.column - 1).collect();
    let quote = usize::from(matches!(rest.first(), Some('\'' | '"')));
    let written = rest.iter().skip(quote).take(inside.value.chars().count()).copied();
    if written.eq(inside.value.chars()) {
        TextPosition { line: at.line, column: at.column + quote + inside.offset }
    } else {
        at
    }
}

/// The line and column of the node at `path`, or `None` when it cannot be found.
fn locate(yaml: &str, path: &[PathSegment]) -> Option<TextPosition> {
    let deserializer = serde_yaml::Deserializer::from_str(yaml);
    match (Probe { path }).deserialize(deserializer) {
        Ok(()) => None,
        Err(e) => e.location().map(|l| TextPosition { line: l.line(), column: l.column() }),
    }
}

/// Walks to the node at `path` and fails there, so the error carries the node's mark.
struct Probe<'a> {
    path: &'a [PathSegment],
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.path.split_first() {
            // Target reached: `Target` accepts nothing, so any node kind errors right here.
            None => deserializer.deserialize_any(Target),
            Some((segment, rest)) => deserializer.deserialize_any(Walk { segment, rest }),
        }
    }
}

struct Target;

impl<'de> Visitor<'de> for Target {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the located node")
    }
}

struct Walk<'a> {
    segment: &'a PathSegment,
    rest: &'a [PathSegment],
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a mapping or sequence on the path")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<serde_yaml::Value>()? {
            match self.segment {
                PathSegment::Key(wanted) if key.as_str() == Some(wanted.as_str()) => {
                    map.next_value_seed(Probe { path: self.rest })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let found = match self.segment {
                PathSegment::Index(wanted) if *wanted == index => {
                    seq.next_element_seed(Probe { path: self.rest })?
                }
                _ => seq.next_element::<IgnoredAny>()?.map(|_| ()),
            };
            if found.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }
}
