//! XML bodies as JSON, the way Tines (Ruby's `Hash.from_xml`) reads them, so
//! that `{{ feed.body.rss.channel.item }}` works on an RSS response:
//!
//! - the document is an object with one key, the root element's name;
//! - an element with neither attributes nor child elements is its text
//!   (`null` when empty);
//! - otherwise an object: its attributes and child elements by name (a name
//!   seen twice becomes a list, in document order), and its text, if any
//!   besides whitespace, under `__content__`;
//! - names keep their namespace prefix (`dc:creator`, `atom:link`).
//!
//! Only the predefined and numeric entities are expanded (no DTD, no
//! external entities: no billion laughs, no file reads), and nesting is
//! bounded.

use serde_json::{Map, Value as J};

/// Deeper documents are refused (a stack of open elements this deep is an
/// attack or a mistake, not a feed).
const MAX_DEPTH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("XML nested deeper than {MAX_DEPTH} elements")]
    TooDeep,
    #[error("no root element")]
    Empty,
}

/// One element being read: its name, attributes and children so far.
struct Open {
    name: String,
    fields: Map<String, J>,
    text: String,
    has_attributes: bool,
}

impl Open {
    fn new(name: String) -> Self {
        Open {
            name,
            fields: Map::new(),
            text: String::new(),
            has_attributes: false,
        }
    }

    /// The element's value once closed.
    fn close(mut self) -> (String, J) {
        if self.fields.is_empty() && !self.has_attributes {
            let value = if self.text.is_empty() {
                J::Null
            } else {
                J::String(self.text)
            };
            return (self.name, value);
        }
        if !self.text.trim().is_empty() {
            self.fields.insert("__content__".into(), J::String(self.text));
        }
        (self.name, J::Object(self.fields))
    }

    /// Adds a child (or an attribute): a second one of a name makes a list
    /// (a value read from XML is never a list itself).
    fn add(&mut self, name: String, value: J) {
        match self.fields.get_mut(&name) {
            None => {
                self.fields.insert(name, value);
            }
            Some(J::Array(list)) => list.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = J::Array(vec![first, value]);
            }
        }
    }
}

/// An element's name and attributes.
fn open(start: &quick_xml::events::BytesStart<'_>, reader: &quick_xml::Reader<&[u8]>) -> Result<Open, XmlError> {
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let mut open = Open::new(name);
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| XmlError::Malformed(e.to_string()))?;
        let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
        // Namespace declarations say how names are spelt, not data.
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let value = attribute
            .decode_and_unescape_value(reader.decoder())
            .map_err(|e| XmlError::Malformed(e.to_string()))?
            .into_owned();
        open.has_attributes = true;
        open.add(key, J::String(value));
    }
    Ok(open)
}

/// Parses an XML document into JSON as described above.
pub fn to_json(text: &str) -> Result<J, XmlError> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(text.as_bytes());
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<(String, J)> = None;
    let malformed = |e: &dyn std::fmt::Display| XmlError::Malformed(e.to_string());
    // Adds a closed element to its parent, or makes it the root.
    let place =
        |stack: &mut Vec<Open>, root: &mut Option<(String, J)>, (name, value): (String, J)| match stack.last_mut() {
            Some(parent) => parent.add(name, value),
            None => {
                if root.is_none() {
                    *root = Some((name, value));
                }
            }
        };
    loop {
        match reader.read_event().map_err(|e| malformed(&e))? {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                stack.push(open(&start, &reader)?);
            }
            Event::Empty(start) => {
                let element = open(&start, &reader)?.close();
                place(&mut stack, &mut root, element);
            }
            Event::End(_) => {
                let Some(element) = stack.pop() else {
                    return Err(XmlError::Malformed("a closing tag without its opening tag".into()));
                };
                place(&mut stack, &mut root, element.close());
            }
            Event::Text(t) => {
                if let Some(element) = stack.last_mut() {
                    let text = t.unescape().map_err(|e| malformed(&e))?;
                    element.text.push_str(&text);
                }
            }
            Event::CData(c) => {
                if let Some(element) = stack.last_mut() {
                    element.text.push_str(&String::from_utf8_lossy(&c.into_inner()));
                }
            }
            Event::Eof => break,
            // Declarations, comments, processing instructions, a DOCTYPE
            // (never expanded).
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed("the document ends inside an element".into()));
    }
    let (name, value) = root.ok_or(XmlError::Empty)?;
    let mut doc = Map::new();
    doc.insert(name, value);
    Ok(J::Object(doc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_rss_feed_reads_as_tines_reads_it() {
        let feed = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel>
    <title>CISA Current Activity</title>
    <item><title>One &amp; two</title><link>https://a.test/1</link><dc:creator>CISA</dc:creator></item>
    <item><title><![CDATA[<b>Three</b>]]></title><link>https://a.test/2</link><guid isPermaLink="false">g2</guid></item>
    <empty/>
  </channel>
</rss>"#;
        let doc = to_json(feed).expect("parses");
        assert_eq!(doc["rss"]["version"], "2.0");
        assert_eq!(doc["rss"]["channel"]["title"], "CISA Current Activity");
        let items = doc["rss"]["channel"]["item"].as_array().expect("a list of two items");
        assert_eq!(
            items[0],
            json!({"title": "One & two", "link": "https://a.test/1", "dc:creator": "CISA"})
        );
        assert_eq!(items[1]["title"], "<b>Three</b>");
        assert_eq!(items[1]["guid"], json!({"isPermaLink": "false", "__content__": "g2"}));
        assert_eq!(doc["rss"]["channel"]["empty"], J::Null);
    }

    #[test]
    fn one_child_is_not_a_list_and_malformed_or_deep_documents_are_errors() {
        let doc = to_json("<a><b>1</b></a>").expect("parses");
        assert_eq!(doc, json!({"a": {"b": "1"}}));
        assert!(matches!(to_json("<a><b></a>"), Err(XmlError::Malformed(_))));
        assert!(matches!(to_json("   "), Err(XmlError::Empty)));
        let deep = format!("{}{}", "<a>".repeat(300), "</a>".repeat(300));
        assert!(matches!(to_json(&deep), Err(XmlError::TooDeep)));
        // Entities are not expanded beyond the predefined ones.
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa">]><l>&a;</l>"#;
        assert!(to_json(laughs).is_err(), "an undefined entity is refused, not expanded");
    }
}
