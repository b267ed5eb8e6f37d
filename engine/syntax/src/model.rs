//! The raw story: the YAML as written, with spans. Only these types (and each
//! action's config in `tale-actions`) are deserialized; `check` turns them into
//! a `Story` (in tale-core).

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::span::Spanned;
use crate::yaml::Node;

/// The keys of a story file other than `actions` (decoded per action, by type).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStory {
    /// Story format version. Only `1` exists; it is the default.
    pub tale: Option<Spanned<u64>>,
    /// Story id used by `send_to_story`; defaults to the file stem.
    pub id: Option<Spanned<String>>,
    /// Display name.
    pub name: Option<Spanned<String>>,
    pub description: Option<String>,
    /// Slug of the webhook action that receives calls from other stories.
    pub entry: Option<Spanned<String>>,
    /// Slugs of the message_only transforms whose output is returned to the caller.
    pub exits: Option<Spanned<Vec<Spanned<String>>>>,
    /// Inputs a caller passes, checked at every call site.
    pub inputs: Option<Spanned<IndexMap<String, Spanned<Input>>>>,
    /// How long the events of a run are kept: `30d`, `12h`, or seconds.
    #[schemars(with = "Option<StringOrSeconds>")]
    pub keep_events_for: Option<Node>,
    /// The actions, keyed by slug (`[a-z0-9_]+`). The loader takes them out
    /// of the document before this struct is decoded (each is decoded by type).
    #[schemars(with = "IndexMap<String, Node>")]
    pub actions: Option<serde::de::IgnoredAny>,
}

impl RawStory {
    /// Takes the keys `other` has (the story keys are decoded one by one).
    pub fn merge(&mut self, other: RawStory) {
        self.tale = other.tale.or(self.tale.take());
        self.id = other.id.or(self.id.take());
        self.name = other.name.or(self.name.take());
        self.description = other.description.or(self.description.take());
        self.entry = other.entry.or(self.entry.take());
        self.exits = other.exits.or(self.exits.take());
        self.inputs = other.inputs.or(self.inputs.take());
        self.keep_events_for = other.keep_events_for.or(self.keep_events_for.take());
        self.actions = other.actions.or(self.actions.take());
    }
}

/// One declared input of a sub-story.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<InputType>>,
    #[serde(default)]
    pub required: bool,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    String,
    Number,
    Boolean,
    Object,
    Array,
}

impl InputType {
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Number => "number",
            InputType::Boolean => "boolean",
            InputType::Object => "object",
            InputType::Array => "array",
        }
    }
}

/// The keys every action has, whatever its type.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCommon {
    /// The action type.
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    /// Display name.
    pub name: Option<String>,
    pub description: Option<String>,
    /// The actions whose events this one receives: `slug`, `slug.failure`,
    /// `slug.no_match`, or a list of them.
    #[schemars(with = "OneOrMany")]
    pub from: Option<Node>,
    /// A disabled action receives events but does nothing with them.
    #[serde(default)]
    pub disabled: bool,
    /// Run on a schedule: a cron string or `{cron, timezone}`. Only without `from`.
    #[schemars(with = "ScheduleSchema")]
    pub schedule: Option<Node>,
    /// The action runs only for events that match these rules.
    pub rules: Option<Spanned<Vec<Rule>>>,
    /// How many rules must match (default: all).
    pub must_match: Option<Spanned<u64>>,
    /// Named values computed before the action runs, read as `LOCAL.name`.
    pub local: Option<IndexMap<String, Node>>,
    /// Names of the story's state this action sets when it emits, rendered
    /// with its last event (readable by the action's slug); read as `STATE.name`.
    pub state: Option<IndexMap<String, Node>>,
}

impl RawCommon {
    /// Takes the keys `other` has (the common keys are decoded one by one).
    pub fn merge(&mut self, other: RawCommon) {
        self.kind = other.kind.or(self.kind.take());
        self.name = other.name.or(self.name.take());
        self.description = other.description.or(self.description.take());
        self.from = other.from.or(self.from.take());
        self.disabled |= other.disabled;
        self.schedule = other.schedule.or(self.schedule.take());
        self.rules = other.rules.or(self.rules.take());
        self.must_match = other.must_match.or(self.must_match.take());
        self.local = other.local.or(self.local.take());
        self.state = other.state.or(self.state.take());
    }

    /// Keys handled here, listed in unknown-key messages beside the type's own.
    pub const KEYS: &'static [&'static str] = &[
        "type",
        "name",
        "description",
        "from",
        "disabled",
        "schedule",
        "rules",
        "must_match",
        "local",
        "state",
    ];
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ScheduleSchema {
    Cron(String),
    Full(ScheduleMap),
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum StringOrSeconds {
    Text(String),
    Seconds(u64),
}

/// `schedule:` as a mapping.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleMap {
    pub cron: Spanned<String>,
    pub timezone: Option<Spanned<String>>,
}

/// A rule of a trigger or of an action's `rules`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `regex`, `!regex`, `field==value`, `field!=value`, `field<value`,
    /// `field<=value`, `field>value`, `field>=value`, `in`, `not in`,
    /// `is_empty`, `is_present`.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// The value tested, usually a template such as `{{ alert.severity }}`.
    pub path: Spanned<String>,
    /// What it is compared with: a string, number or boolean, a list for `in`.
    pub value: Option<Node>,
    /// Compare this rule's text case-sensitively or not, whatever the
    /// trigger says (regexes: insensitive by default, as in Tines).
    pub case_sensitive: Option<bool>,
}

/// The rule types, in the spelling stories use.
pub const RULE_TYPES: &[&str] = &[
    "regex",
    "!regex",
    "field==value",
    "field!=value",
    "field<value",
    "field<=value",
    "field>value",
    "field>=value",
    "in",
    "not in",
    "is_empty",
    "is_present",
];
