//! The Tines tags: `{% credential x %}`, `{% global_resource x %}`,
//! `{% story Name %}`, `{% line_break %}`, `{% story_run_guid %}`,
//! `{% story_run_link %}`, `{% prompt status %}`.
//! Each reads the namespace a story's templates see (`CREDENTIAL`, `RESOURCE`,
//! `STORY`, `META`), so that the tag and the variable form always agree.

use std::io::Write;

use liquid_core::model::ScalarCow;
use liquid_core::parser::{TagReflection, TagTokenIter};
use liquid_core::{Error, Language, ParseTag, Renderable, Result, Runtime, ValueView};

#[derive(Clone, Copy, Debug)]
pub(crate) enum TinesTag {
    Credential,
    GlobalResource,
    Story,
    LineBreak,
    StoryRunGuid,
    StoryRunLink,
    Prompt,
}

pub(crate) const ALL_TAGS: &[TinesTag] = &[
    TinesTag::Credential,
    TinesTag::GlobalResource,
    TinesTag::Story,
    TinesTag::LineBreak,
    TinesTag::StoryRunGuid,
    TinesTag::StoryRunLink,
    TinesTag::Prompt,
];

impl TinesTag {
    pub(crate) fn name(self) -> &'static str {
        match self {
            TinesTag::Credential => "credential",
            TinesTag::GlobalResource => "global_resource",
            TinesTag::Story => "story",
            TinesTag::LineBreak => "line_break",
            TinesTag::StoryRunGuid => "story_run_guid",
            TinesTag::StoryRunLink => "story_run_link",
            TinesTag::Prompt => "prompt",
        }
    }
}

impl TagReflection for TinesTag {
    fn tag(&self) -> &str {
        self.name()
    }
    fn description(&self) -> &str {
        match self {
            TinesTag::Credential => "the value of a credential, as CREDENTIAL.name",
            TinesTag::GlobalResource => "the value of a resource, as RESOURCE.name",
            TinesTag::Story => "a story's id, for send_to_story",
            TinesTag::LineBreak => "a line break",
            TinesTag::StoryRunGuid => "the id of the current run",
            TinesTag::StoryRunLink => "the current run's page in the web UI of tale serve",
            TinesTag::Prompt => "a signed link a person clicks to answer with this status (tale serve)",
        }
    }
}

impl ParseTag for TinesTag {
    fn parse(&self, mut arguments: TagTokenIter<'_>, _options: &Language) -> Result<Box<dyn Renderable>> {
        let words: Vec<String> = arguments.by_ref().map(|t| t.as_str().to_owned()).collect();
        let path: Vec<String> = match self {
            TinesTag::Credential | TinesTag::GlobalResource => {
                let [name] = words.as_slice() else {
                    return Err(Error::with_msg(format!(
                        "`{{% {} name %}}` takes exactly one name",
                        self.name()
                    )));
                };
                let ns = if matches!(self, TinesTag::Credential) {
                    "CREDENTIAL"
                } else {
                    "RESOURCE"
                };
                // A dotted name reads a key of the credential, exactly as
                // `{{ CREDENTIAL.a.b }}` (and as `check` reads it).
                std::iter::once(ns.to_owned())
                    .chain(name.split('.').map(str::to_owned))
                    .collect()
            }
            TinesTag::Story => {
                if words.is_empty() {
                    return Err(Error::with_msg("`{% story Name %}` needs a story name"));
                }
                return Ok(Box::new(Rendered::StoryName(words.join(" "))));
            }
            TinesTag::LineBreak | TinesTag::StoryRunGuid | TinesTag::StoryRunLink => {
                if !words.is_empty() {
                    return Err(Error::with_msg(format!("`{{% {} %}}` takes no arguments", self.name())));
                }
                match self {
                    TinesTag::LineBreak => return Ok(Box::new(Rendered::LineBreak)),
                    TinesTag::StoryRunLink => vec!["META".into(), "run".into(), "link".into()],
                    _ => vec!["META".into(), "run".into(), "id".into()],
                }
            }
            TinesTag::Prompt => {
                // The executor signs one link per status an action's
                // templates name (`prompt_statuses`) and puts it here. The
                // tokenizer splits a word that starts like a literal
                // (`falsepositive` → `false`, `positive`): joined back.
                let status = words.concat();
                if status.is_empty() {
                    return Err(Error::with_msg("`{% prompt status %}` needs a status"));
                }
                vec!["META".into(), "prompt".into(), status]
            }
        };
        Ok(Box::new(Rendered::Lookup(path)))
    }

    fn reflection(&self) -> &dyn TagReflection {
        self
    }
}

#[derive(Debug)]
enum Rendered {
    Lookup(Vec<String>),
    StoryName(String),
    LineBreak,
}

impl Renderable for Rendered {
    fn render_to(&self, writer: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        let text = match self {
            Rendered::LineBreak => "\n".to_owned(),
            Rendered::StoryName(name) => story_slug(name),
            Rendered::Lookup(path) => {
                let path: Vec<ScalarCow<'_>> = path.iter().map(|p| ScalarCow::new(p.as_str())).collect();
                runtime
                    .try_get(&path)
                    .map(|v| v.to_kstr().into_string())
                    .unwrap_or_default()
            }
        };
        writer
            .write_all(text.as_bytes())
            .map_err(|e| Error::with_msg(format!("cannot write: {e}")))
    }
}

/// `{% story Sentinel Alert Triage %}` names a story by display name; tale
/// story ids are file stems, so the name is lower-cased with dashes: `sentinel-alert-triage`.
pub fn story_slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}
