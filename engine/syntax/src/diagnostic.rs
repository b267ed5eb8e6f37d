//! Diagnostics as data: a stable code, a severity, a message, a primary span,
//! secondary labels and a help line. Rendering lives in [`crate::report`].

use std::path::PathBuf;
use std::sync::Arc;

use crate::span::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

macro_rules! codes {
    ($( $variant:ident = ($code:literal, $name:literal, $sev:ident, $summary:literal), )*) => {
        /// Every kind of problem `tale check` reports. The code and name are
        /// stable: CI configurations and documentation refer to them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $( $variant, )* }

        impl Code {
            pub const ALL: &'static [Code] = &[ $( Code::$variant, )* ];

            /// The stable code, such as `E204`.
            pub fn code(self) -> &'static str {
                match self { $( Code::$variant => $code, )* }
            }

            /// The stable kebab-case name, such as `cycle`.
            pub fn name(self) -> &'static str {
                match self { $( Code::$variant => $name, )* }
            }

            pub fn default_severity(self) -> Severity {
                match self { $( Code::$variant => Severity::$sev, )* }
            }

            /// One line on what the code means.
            pub fn summary(self) -> &'static str {
                match self { $( Code::$variant => $summary, )* }
            }
        }
    };
}

codes! {
    // Reading files and YAML.
    FileRead = ("E001", "file-read", Error, "a file or folder given to tale cannot be read"),
    YamlSyntax = ("E002", "yaml-syntax", Error, "the file is not valid YAML"),
    YamlBudget = ("E003", "yaml-budget", Error, "the file exceeds a size, nesting or alias budget"),
    DuplicateKey = ("E004", "duplicate-key", Error, "a mapping repeats a key"),
    // The shape of a story.
    UnknownKey = ("E101", "unknown-key", Error, "a key that tale does not know"),
    MissingKey = ("E102", "missing-key", Error, "a required key is missing"),
    WrongType = ("E103", "wrong-type", Error, "a value has the wrong type"),
    UnknownActionType = ("E104", "unknown-action-type", Error, "an action's `type` is not an action type"),
    UnknownMode = ("E105", "unknown-mode", Error, "a transform's `mode` is not a transform mode"),
    UnknownRuleType = ("E106", "unknown-rule-type", Error, "a rule's `type` is not a rule type"),
    InvalidSlug = ("E107", "invalid-slug", Error, "an action slug or story id is not made of a-z, 0-9 and _"),
    UnsupportedVersion = ("E108", "unsupported-version", Error, "the `tale:` format version is not supported"),
    InvalidValue = ("E109", "invalid-value", Error, "a value is of the right type but not allowed"),
    // The graph of a story.
    DuplicateSlug = ("E201", "duplicate-slug", Error, "two actions share a slug"),
    UnknownSource = ("E202", "unknown-source", Error, "`from` names an action that does not exist"),
    UnknownBranch = ("E203", "unknown-branch", Error, "`from` names a branch the source action does not have"),
    Cycle = ("E204", "cycle", Error, "actions form a cycle"),
    Unreachable = ("E205", "unreachable-action", Error, "no entry point leads to an action"),
    ScheduleWithFrom = ("E206", "schedule-with-from", Error, "an action has both `schedule` and `from`"),
    InvalidEntry = ("E207", "invalid-entry", Error, "`entry` is missing or does not name a webhook"),
    InvalidExit = ("E208", "invalid-exit", Error, "`exits` is missing or names an action that is not a message_only transform"),
    NoEntryPoint = ("E209", "no-entry-point", Error, "nothing can start the story: every action has a `from`"),
    ManualAction = ("W213", "manual-action", Warning, "an action without `from` or `schedule` runs only when started by hand"),
    EntryWithFrom = ("E210", "entry-with-from", Error, "a webhook has `from`: webhooks only receive requests"),
    ScheduleOnWebhook = ("E211", "schedule-on-webhook", Error, "a webhook has a `schedule`: webhooks run when called"),
    DuplicateWebhookPath = ("E212", "duplicate-webhook-path", Error, "two webhooks listen on the same path"),
    // Values.
    InvalidCron = ("E301", "invalid-cron", Error, "a schedule is not a valid cron expression"),
    InvalidTimezone = ("E302", "invalid-timezone", Error, "a time zone is not an IANA name"),
    InvalidRegex = ("E303", "invalid-regex", Error, "a regular expression does not compile"),
    InvalidJsonPath = ("E304", "invalid-jsonpath", Error, "a JSONPath expression does not parse"),
    InvalidUrl = ("E305", "invalid-url", Error, "a literal URL does not parse or is not http(s)"),
    InvalidDuration = ("E306", "invalid-duration", Error, "a duration such as `keep_events_for` does not parse"),
    // Templates.
    TemplateSyntax = ("E401", "template-syntax", Error, "a Liquid template does not parse"),
    UnknownFilter = ("E402", "unknown-filter", Error, "a template uses a filter that does not exist"),
    UnknownReference = ("E403", "unknown-reference", Error, "a template names something that is neither an action nor a namespace"),
    NotUpstream = ("E404", "not-upstream", Error, "a template reads an action that does not run before it"),
    UnknownLocal = ("E405", "unknown-local", Error, "a template reads `LOCAL.x` that the action's `local` does not define"),
    UnwrittenState = ("W406", "unwritten-state", Warning, "a template reads `STATE.x` that no action of the story sets"),
    // Across stories.
    UnknownStory = ("E501", "unknown-story", Error, "send_to_story names a story that cannot be found"),
    MissingInput = ("E502", "missing-input", Error, "a call leaves out a required input of the sub-story"),
    UnknownInput = ("E503", "unknown-input", Error, "a call passes an input the sub-story does not declare"),
    StoryRecursion = ("E504", "story-recursion", Error, "stories call each other in a loop"),
    InputType = ("E505", "input-type", Error, "a literal input has the wrong type for the sub-story"),
    NotCallable = ("E506", "not-callable", Error, "the called story has no `entry` and `exits`"),
    DuplicateStoryId = ("E507", "duplicate-story-id", Error, "two stories share an id"),
    // Environment: warnings, errors with --strict.
    MissingCredential = ("W601", "missing-credential", Warning, "a credential is not configured"),
    MissingResource = ("W602", "missing-resource", Warning, "a resource is not configured"),
    UnrestrictedCredential = ("W603", "unrestricted-credential", Warning, "a credential has no `allowed_hosts`"),
    HostNotAllowed = ("W604", "host-not-allowed", Warning, "a request would send a credential to a host it does not allow"),
    OpenWebhook = ("W605", "open-webhook", Warning, "a webhook has no secret: anyone may call it"),
}

impl Code {
    pub fn from_code(s: &str) -> Option<Code> {
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.code().eq_ignore_ascii_case(s) || c.name() == s)
    }
}

/// A secondary place that explains the primary one.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub file: Arc<PathBuf>,
    pub span: Span,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub file: Arc<PathBuf>,
    pub span: Span,
    /// What the caret under the primary span says.
    pub label: Option<String>,
    pub secondary: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(code: Code, file: &Arc<PathBuf>, span: Span, message: impl Into<String>) -> Self {
        Self {
            code,
            severity: code.default_severity(),
            message: message.into(),
            file: file.clone(),
            span,
            label: None,
            secondary: Vec::new(),
            help: None,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn help_opt(mut self, help: Option<String>) -> Self {
        self.help = help.or(self.help);
        self
    }

    pub fn secondary(mut self, file: &Arc<PathBuf>, span: Span, message: impl Into<String>) -> Self {
        self.secondary.push(Label {
            file: file.clone(),
            span,
            message: message.into(),
        });
        self
    }
}

/// "did you mean `x`?" for the closest of `candidates`, when one is close.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // The same words in another order (`parse_json` for `json_parse`) count as a match.
    let parts = |s: &str| {
        let mut p: Vec<String> = s.split(['_', '-', '.']).map(str::to_ascii_lowercase).collect();
        p.sort();
        p
    };
    let word_parts = parts(word);
    candidates
        .into_iter()
        .map(|c| {
            let score = if word.contains(['_', '-']) && parts(c) == word_parts {
                1.0
            } else if word.len() >= 3 && strsim::damerau_levenshtein(word, c) == 1 {
                // One slip (`ulr`, `mehtod`) is close whatever the prefix.
                strsim::jaro_winkler(word, c).max(0.85)
            } else {
                strsim::jaro_winkler(word, c)
            };
            (score, c)
        })
        .filter(|(score, _)| *score >= 0.8)
        // The first best candidate wins a tie (lists are ordered by relevance).
        .fold(None::<(f64, &str)>, |best, (score, c)| match best {
            Some((b, _)) if b >= score => best,
            _ => Some((score, c)),
        })
        .map(|(_, c)| c)
}

/// `a`, `b` and `c`
pub fn one_of(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

/// "a webhook", "an http_request"
pub fn article(word: &str) -> String {
    let vowel = word.starts_with(['a', 'e', 'i', 'o', 'u']) || word.starts_with("http");
    format!("{} {word}", if vowel { "an" } else { "a" })
}
