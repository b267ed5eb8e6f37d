//! Tines' formula language translated to Liquid. A formula is parsed
//! (operators, `|>` pipes with `%`, calls, `LAMBDA`, list and object
//! literals, indexing after any value), then lowered to what tale reads: a
//! plain filter chain when it is one (`UPCASE(DEFAULT(a.b, "x"))` →
//! `{{ a.b | default: "x" | upcase }}`), otherwise silent tags that compute
//! temporaries (`_v1`, `_v2`…) before one output: `IF` becomes
//! `{% if %}`, `REJECT`/`FILTER`/`MAP_LAMBDA` a `{% for %}` loop, `OBJECT`
//! and literals the `set_key`/`push` filters. A formula field keeps its type
//! (the output ends in `| as_object`, after tags that write nothing).
//!
//! A function without a Liquid reading (`MATCH`, `DATE_DIFF`…) makes the
//! whole formula untranslatable: the caller keeps it as text and notes it.

/// Formula functions that are a Liquid filter of their first argument, the
/// rest being the filter's arguments.
const FILTERS: &[(&str, &str)] = &[
    ("DEFAULT", "default"),
    ("DATE", "date"),
    ("SPLIT", "split"),
    ("UPCASE", "upcase"),
    ("DOWNCASE", "downcase"),
    ("CAPITALIZE", "capitalize"),
    ("REMOVE", "remove"),
    ("REMOVE_FIRST", "remove_first"),
    ("REPLACE", "replace"),
    ("REPLACE_FIRST", "replace_first"),
    ("SIZE", "size"),
    ("JOIN", "join"),
    ("FIRST", "first"),
    ("LAST", "last"),
    ("URL_ENCODE", "url_encode"),
    ("URL_DECODE", "url_decode"),
    ("BASE64_ENCODE", "base64_encode"),
    ("BASE64_DECODE", "base64_decode"),
    ("JSON_PARSE", "json_parse"),
    ("NEAT_JSON", "neat_json"),
    ("STRIP", "strip"),
    ("UNIQ", "uniq"),
    ("COMPACT", "compact"),
    ("REVERSE", "reverse"),
    ("SORT", "sort"),
    ("ROUND", "round"),
    ("ABS", "abs"),
    ("CEIL", "ceil"),
    ("FLOOR", "floor"),
    ("PLUS", "plus"),
    ("MINUS", "minus"),
    ("TIMES", "times"),
    ("DIVIDED_BY", "divided_by"),
    ("MODULO", "modulo"),
    ("CONCAT", "concat"),
    ("WHERE", "where"),
    ("MAP", "map"),
    ("TYPE", "type"),
    ("FORCE_ARRAY", "force_array"),
    ("MERGE", "merge"),
    ("SET_KEY", "set_key"),
    ("OBJECTS_TO_CSV", "to_csv"),
    ("CSV_PARSE", "csv_parse"),
    ("SHA256", "sha256"),
    ("MD5", "md5"),
    ("TRUNCATE", "truncate"),
    ("PREPEND", "prepend"),
    ("APPEND", "append"),
];

/// The Liquid of a formula field (`=expr`): its value keeps its type.
pub(crate) fn field(formula: &str) -> Option<String> {
    let expr = parse(formula)?;
    let mut l = Lower::default();
    let v = l.value(&expr)?;
    let out = l.chain(v);
    parses(format!("{}{{{{ {out} | as_object }}}}", l.tags))
}

/// The Liquid of a pill (`<<expr>>` in text); `n` numbers the temporaries
/// across the pills of one text.
pub(crate) fn pill(formula: &str, n: &mut usize) -> Option<String> {
    let expr = parse(formula)?;
    let mut l = Lower {
        n: *n,
        ..Lower::default()
    };
    // TEXT(x) is x as text: what a pill renders anyway.
    let expr = match expr {
        Expr::Call(name, mut args) if name == "TEXT" && args.len() == 1 => args.remove(0),
        e => e,
    };
    let v = l.value(&expr)?;
    let out = l.chain(v);
    *n = l.n;
    parses(format!("{}{{{{ {out} }}}}", l.tags))
}

/// A formula rule: a template that renders `true` when the formula holds.
pub(crate) fn condition(formula: &str) -> Option<String> {
    let expr = parse(formula)?;
    let mut l = Lower::default();
    let c = l.cond(&expr)?;
    parses(format!("{}{{% if {c} %}}true{{% else %}}false{{% endif %}}", l.tags))
}

/// The translation, if tale's parser takes it: a filter called with
/// arguments it does not take (`DATE(x, format, zone)`) is not a reading.
fn parses(liquid: String) -> Option<String> {
    thread_local! {
        // Built once: a parser registers every filter and tag.
        static PARSER: tale_engine::template::TemplateParser = tale_engine::template::TemplateParser::new();
    }
    PARSER.with(|p| p.parse(&liquid).is_ok()).then_some(liquid)
}

fn parse(formula: &str) -> Option<Expr> {
    let mut p = Parser {
        s: formula.trim().as_bytes(),
        at: 0,
    };
    let expr = p.pipe()?;
    p.space();
    (p.at == p.s.len()).then_some(expr)
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Num(String),
    Str(String),
    /// `true`, `false`, `nil`.
    Word(&'static str),
    Name(String),
    /// `%`: the left side of the nearest `|>`.
    Hole,
    Member(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
    Lambda(Vec<String>, Box<Expr>),
    Binary(&'static str, Box<Expr>, Box<Expr>),
    Pipe(Box<Expr>, Box<Expr>),
    List(Vec<Expr>),
    Object(Vec<(Expr, Expr)>),
}

// ---------------------------------------------------------------------------
// Lowering to Liquid

/// A lowered value: `Simple` is a variable path or a literal (it can be a
/// filter's argument), `Chain` a value followed by filters.
enum Val {
    Simple(String),
    Chain(String),
}

#[derive(Default)]
struct Lower {
    /// The tags that compute temporaries, in order.
    tags: String,
    n: usize,
    hole: Option<String>,
    /// Lambda parameters read as another name (innermost last).
    renames: Vec<(String, String)>,
}

impl Lower {
    fn temp(&mut self) -> String {
        self.n += 1;
        format!("_v{}", self.n)
    }

    fn assign(&mut self, value: &str) -> String {
        let t = self.temp();
        self.tags.push_str(&format!("{{% assign {t} = {value} %}}"));
        t
    }

    fn simple(&mut self, v: Val) -> String {
        match v {
            Val::Simple(s) => s,
            Val::Chain(c) => self.assign(&c),
        }
    }

    fn chain(&self, v: Val) -> String {
        match v {
            Val::Simple(s) | Val::Chain(s) => s,
        }
    }

    fn filter(&mut self, input: Val, filter: &str, args: &[String]) -> Val {
        let mut out = self.chain(input);
        out.push_str(" | ");
        out.push_str(filter);
        for (i, a) in args.iter().enumerate() {
            out.push_str(if i == 0 { ": " } else { ", " });
            out.push_str(a);
        }
        Val::Chain(out)
    }

    /// A variable path that can take `.key` or `[i]` after it.
    fn path(&mut self, e: &Expr) -> Option<String> {
        match self.value(e)? {
            Val::Simple(s) if is_path(&s) => Some(s),
            v => {
                let c = self.chain(v);
                Some(self.assign(&c))
            }
        }
    }

    fn value(&mut self, e: &Expr) -> Option<Val> {
        Some(match e {
            Expr::Num(n) => Val::Simple(n.clone()),
            Expr::Str(s) => Val::Simple(literal(s)?),
            Expr::Word(w) => Val::Simple((*w).to_owned()),
            Expr::Name(n) => Val::Simple(
                self.renames
                    .iter()
                    .rev()
                    .find(|(from, _)| from == n)
                    .map_or_else(|| n.clone(), |(_, to)| to.clone()),
            ),
            Expr::Hole => Val::Simple(self.hole.clone()?),
            Expr::Member(base, key) => {
                let base = self.path(base)?;
                Val::Simple(if is_ident(key) {
                    format!("{base}.{key}")
                } else {
                    format!("{base}[{}]", literal(key)?)
                })
            }
            Expr::Index(base, index) => {
                let base = self.path(base)?;
                let index = self.value(index)?;
                let index = self.simple(index);
                Val::Simple(format!("{base}[{index}]"))
            }
            Expr::Pipe(left, right) => {
                let left = self.value(left)?;
                let left = self.simple(left);
                let outer = self.hole.replace(left);
                let v = self.value(right);
                self.hole = outer;
                v?
            }
            Expr::Binary(op, a, b) => match *op {
                "&" | "+" | "-" | "*" | "/" => {
                    let filter = match *op {
                        "&" => "append",
                        "+" => "plus",
                        "-" => "minus",
                        "*" => "times",
                        _ => "divided_by",
                    };
                    let a = self.value(a)?;
                    let b = self.value(b)?;
                    let b = self.simple(b);
                    self.filter(a, filter, &[b])
                }
                _ => self.boolean(e)?,
            },
            Expr::List(items) => {
                let items = self.simples(items)?;
                let mut v = Val::Chain(r#""[]" | json_parse"#.into());
                for item in items {
                    v = self.filter(v, "push", &[item]);
                }
                v
            }
            Expr::Object(pairs) => self.object(pairs)?,
            Expr::Lambda(..) => return None,
            Expr::Call(name, args) => self.call(name, args)?,
        })
    }

    fn simples(&mut self, items: &[Expr]) -> Option<Vec<String>> {
        items
            .iter()
            .map(|e| {
                let v = self.value(e)?;
                Some(self.simple(v))
            })
            .collect()
    }

    fn object(&mut self, pairs: &[(Expr, Expr)]) -> Option<Val> {
        let mut lowered = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let k = self.value(k)?;
            let k = self.simple(k);
            let v = self.value(v)?;
            lowered.push((k, self.simple(v)));
        }
        let mut v = Val::Chain(r#""{}" | json_parse"#.into());
        for (k, value) in lowered {
            v = self.filter(v, "set_key", &[k, value]);
        }
        Some(v)
    }

    fn call(&mut self, name: &str, args: &[Expr]) -> Option<Val> {
        match (name, args) {
            ("IF", [c, then, rest @ ..]) if rest.len() <= 1 => {
                let c = self.cond(c)?;
                let t = self.temp();
                self.tags.push_str(&format!("{{% if {c} %}}"));
                self.assign_to(&t, then)?;
                self.tags.push_str("{% else %}");
                match rest.first() {
                    Some(otherwise) => self.assign_to(&t, otherwise)?,
                    None => self.tags.push_str(&format!("{{% assign {t} = nil %}}")),
                }
                self.tags.push_str("{% endif %}");
                Some(Val::Simple(t))
            }
            ("SWITCH", [subject, cases @ ..]) if cases.len() >= 2 => {
                let subject = self.value(subject)?;
                let subject = self.simple(subject);
                // Keys are computed before the `case`: their tags would
                // otherwise land in the branch before them.
                let mut keys = Vec::new();
                for pair in cases.chunks(2) {
                    if let [key, _] = pair {
                        let key = self.value(key)?;
                        keys.push(self.simple(key));
                    }
                }
                let t = self.temp();
                self.tags.push_str(&format!("{{% case {subject} %}}"));
                let mut keys = keys.into_iter();
                for pair in cases.chunks(2) {
                    match pair {
                        [_, value] => {
                            let key = keys.next()?;
                            self.tags.push_str(&format!("{{% when {key} %}}"));
                            self.assign_to(&t, value)?;
                        }
                        [default] => {
                            self.tags.push_str("{% else %}");
                            self.assign_to(&t, default)?;
                        }
                        _ => return None,
                    }
                }
                self.tags.push_str("{% endcase %}");
                Some(Val::Simple(t))
            }
            ("REJECT" | "FILTER" | "MAP_LAMBDA", [list, Expr::Lambda(params, body)]) if params.len() <= 2 => {
                let list = self.value(list)?;
                let list = self.simple(list);
                // A list, or an object (its values, and a result of the same
                // shape for REJECT and FILTER), known only when it runs.
                let t = self.temp();
                let kind = self.assign(&format!("{list} | type"));
                self.tags.push_str(&format!("{{% if {kind} == \"Hash\" %}}"));
                let pair = self.temp();
                let start = if name == "MAP_LAMBDA" { "[]" } else { "{}" };
                self.tags.push_str(&format!(
                    "{{% assign {t} = \"{start}\" | json_parse %}}{{% for {pair} in {list} %}}"
                ));
                // The parameters are other names here: an `assign` would be
                // seen by the rest of the template, where a name may be an action's.
                let value = format!("{pair}[1]");
                let outer = self.renames.len();
                self.renames.push((params[0].clone(), value.clone()));
                if let Some(key) = params.get(1) {
                    self.renames.push((key.clone(), format!("{pair}[0]")));
                }
                let kept = self.lambda_body(name, &t, &value, body, Some(&format!("{pair}[0]")));
                self.renames.truncate(outer);
                kept?;
                self.tags.push_str("{% endfor %}{% else %}");
                self.tags.push_str(&format!(
                    "{{% assign {t} = \"[]\" | json_parse %}}{{% for {} in {list} %}}",
                    params[0]
                ));
                if let Some(index) = params.get(1) {
                    self.tags.push_str(&format!("{{% assign {index} = forloop.index0 %}}"));
                }
                self.lambda_body(name, &t, &params[0], body, None)?;
                self.tags.push_str("{% endfor %}{% endif %}");
                Some(Val::Simple(t))
            }
            ("OBJECT", pairs) if pairs.len() % 2 == 0 => {
                let pairs: Vec<(Expr, Expr)> = pairs.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
                self.object(&pairs)
            }
            ("TEXT", [x]) => {
                let x = self.value(x)?;
                let x = self.chain(x);
                let t = self.temp();
                self.tags
                    .push_str(&format!("{{% capture {t} %}}{{{{ {x} }}}}{{% endcapture %}}"));
                Some(Val::Simple(t))
            }
            ("NUMBER", [x]) => {
                let x = self.value(x)?;
                Some(self.filter(x, "plus", &["0".into()]))
            }
            ("TODAY", []) => Some(Val::Chain(r#""now" | date: "%Y-%m-%d""#.into())),
            ("NOW", []) => Some(Val::Chain(r#""now" | date: "%FT%T%:z""#.into())),
            ("UNIX_TIMESTAMP", []) => Some(Val::Chain(r#""now" | date: "%s" | plus: 0"#.into())),
            ("CSV_PARSE_TO_OBJECTS", [x]) => {
                let x = self.value(x)?;
                Some(self.filter(x, "csv_parse", &["true".into()]))
            }
            ("SLICE_ARRAY", [x, Expr::Num(start), Expr::Num(end)]) => {
                let (start, end) = (start.parse::<i64>().ok()?, end.parse::<i64>().ok()?);
                let x = self.value(x)?;
                Some(self.filter(
                    x,
                    "slice",
                    &[start.to_string(), end.checked_sub(start)?.max(0).to_string()],
                ))
            }
            // DATE(x) alone reads a date Tines' way ("1 days ago"): no Liquid reading.
            ("DATE", [_]) => None,
            ("AND" | "OR", [_, ..])
            | ("NOT" | "IS_EMPTY" | "IS_PRESENT" | "IS_BLANK", [_])
            | ("INCLUDES" | "EQUAL", [_, _]) => self.boolean(&Expr::Call(name.to_owned(), args.to_vec())),
            _ => {
                let (_, filter) = FILTERS.iter().find(|(f, _)| *f == name)?;
                let (first, rest) = args.split_first()?;
                let input = self.value(first)?;
                let rest = self.simples(rest)?;
                Some(self.filter(input, filter, &rest))
            }
        }
    }

    /// One element of `REJECT`/`FILTER`/`MAP_LAMBDA`: keep `param` (under
    /// `key` when the result is an object) or the body's value.
    fn lambda_body(&mut self, name: &str, t: &str, param: &str, body: &Expr, key: Option<&str>) -> Option<()> {
        let add = |value: &str| match key {
            Some(key) => format!("{{% assign {t} = {t} | set_key: {key}, {value} %}}"),
            None => format!("{{% assign {t} = {t} | push: {value} %}}"),
        };
        if name == "MAP_LAMBDA" {
            let v = self.value(body)?;
            let v = self.simple(v);
            // A map's result is a list, whatever it maps over.
            self.tags.push_str(&format!("{{% assign {t} = {t} | push: {v} %}}"));
            return Some(());
        }
        let c = self.cond(body)?;
        let (open, close) = if name == "REJECT" {
            ("unless", "endunless")
        } else {
            ("if", "endif")
        };
        let keep = add(param);
        self.tags.push_str(&format!("{{% {open} {c} %}}{keep}{{% {close} %}}"));
        Some(())
    }

    /// `{% assign t = <e> %}`, the tags `e` needs first.
    fn assign_to(&mut self, t: &str, e: &Expr) -> Option<()> {
        let v = self.value(e)?;
        let v = self.chain(v);
        self.tags.push_str(&format!("{{% assign {t} = {v} %}}"));
        Some(())
    }

    /// A condition's value: `true` or `false` in a temporary.
    fn boolean(&mut self, e: &Expr) -> Option<Val> {
        let c = self.cond(e)?;
        Some(Val::Simple(self.flag(&c, true)))
    }

    /// A Liquid condition for `{% if %}`.
    fn cond(&mut self, e: &Expr) -> Option<String> {
        match e {
            Expr::Binary(op, a, b) if matches!(*op, "=" | "!=" | "<" | "<=" | ">" | ">=") => {
                let op = if *op == "=" { "==" } else { op };
                let a = self.value(a)?;
                let a = self.simple(a);
                let b = self.value(b)?;
                let b = self.simple(b);
                Some(format!("{a} {op} {b}"))
            }
            Expr::Call(name, args) => match (name.as_str(), args.as_slice()) {
                ("OR" | "AND", [_, ..]) => {
                    let joiner = if name == "OR" { " or " } else { " and " };
                    let mut parts = Vec::with_capacity(args.len());
                    for a in args {
                        let c = self.cond(a)?;
                        // Liquid has no parentheses: a compound part is computed first.
                        parts.push(if c.contains(" or ") || c.contains(" and ") {
                            self.flag(&c, true)
                        } else {
                            c
                        });
                    }
                    Some(parts.join(joiner))
                }
                ("NOT", [x]) => {
                    let c = self.cond(x)?;
                    Some(self.flag(&c, false))
                }
                ("IS_EMPTY", [x]) => Some(format!("{} == empty", self.operand(x)?)),
                ("IS_BLANK", [x]) => Some(format!("{} == blank", self.operand(x)?)),
                ("IS_PRESENT", [x]) => Some(format!("{} != blank", self.operand(x)?)),
                ("INCLUDES", [a, b]) => {
                    let a = self.operand(a)?;
                    let b = self.operand(b)?;
                    Some(format!("{a} contains {b}"))
                }
                ("EQUAL", [a, b]) => {
                    let a = self.operand(a)?;
                    let b = self.operand(b)?;
                    Some(format!("{a} == {b}"))
                }
                _ => self.operand(e),
            },
            // Any other value: Liquid's truth (only nil and false are false).
            _ => self.operand(e),
        }
    }

    fn operand(&mut self, e: &Expr) -> Option<String> {
        let v = self.value(e)?;
        Some(self.simple(v))
    }

    /// A temporary holding whether condition `c` holds (`when` = `true`),
    /// or whether it does not (`when` = `false`).
    fn flag(&mut self, c: &str, when: bool) -> String {
        let t = self.temp();
        self.tags.push_str(&format!(
            "{{% if {c} %}}{{% assign {t} = {when} %}}{{% else %}}{{% assign {t} = {} %}}{{% endif %}}",
            !when
        ));
        t
    }
}

fn is_ident(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A variable path (`a.b[0]`), not a literal.
fn is_path(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && !matches!(s, "true" | "false" | "nil")
}

/// A Liquid string literal: Liquid has no escapes, so the quote is one the
/// text does not hold; text that would end a tag has no literal.
fn literal(s: &str) -> Option<String> {
    if ["{{", "}}", "{%", "%}"].iter().any(|m| s.contains(m)) {
        return None;
    }
    if !s.contains('"') {
        Some(format!("\"{s}\""))
    } else if !s.contains('\'') {
        Some(format!("'{s}'"))
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Parsing

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn space(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.space();
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, token: &str) -> bool {
        self.space();
        if self.s[self.at..].starts_with(token.as_bytes()) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Option<()> {
        self.eat(token).then_some(())
    }

    /// `a |> f(%) |> …`
    fn pipe(&mut self) -> Option<Expr> {
        let mut e = self.compare()?;
        while self.eat("|>") {
            let right = self.compare()?;
            e = Expr::Pipe(Box::new(e), Box::new(right));
        }
        Some(e)
    }

    fn compare(&mut self) -> Option<Expr> {
        let e = self.concat()?;
        for (token, op) in [
            ("==", "="),
            ("!=", "!="),
            ("<>", "!="),
            ("<=", "<="),
            (">=", ">="),
            ("=", "="),
            ("<", "<"),
            (">", ">"),
        ] {
            if self.eat(token) {
                let right = self.concat()?;
                return Some(Expr::Binary(op, Box::new(e), Box::new(right)));
            }
        }
        Some(e)
    }

    fn concat(&mut self) -> Option<Expr> {
        let mut e = self.additive()?;
        while self.peek() == Some(b'&') && self.s.get(self.at + 1) != Some(&b'&') {
            self.at += 1;
            let right = self.additive()?;
            e = Expr::Binary("&", Box::new(e), Box::new(right));
        }
        Some(e)
    }

    fn additive(&mut self) -> Option<Expr> {
        self.binary(&[(b'+', "+"), (b'-', "-")], Self::multiplicative)
    }

    fn multiplicative(&mut self) -> Option<Expr> {
        self.binary(&[(b'*', "*"), (b'/', "/")], Self::unary)
    }

    /// One level of left-associative operators over `operand`.
    fn binary(&mut self, ops: &[(u8, &'static str)], operand: fn(&mut Self) -> Option<Expr>) -> Option<Expr> {
        let mut e = operand(self)?;
        loop {
            let Some(&(_, op)) = ops.iter().find(|(c, _)| self.peek() == Some(*c)) else {
                return Some(e);
            };
            self.at += 1;
            let right = operand(self)?;
            e = Expr::Binary(op, Box::new(e), Box::new(right));
        }
    }

    fn unary(&mut self) -> Option<Expr> {
        if self.peek() == Some(b'-') {
            self.at += 1;
            return Some(match self.unary()? {
                Expr::Num(n) => Expr::Num(format!("-{n}")),
                e => Expr::Binary("*", Box::new(e), Box::new(Expr::Num("-1".into()))),
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Option<Expr> {
        let mut e = self.primary()?;
        loop {
            // No space before `.` or `[`: `a [b]` is not an index.
            match self.s.get(self.at) {
                Some(b'.') => {
                    self.at += 1;
                    let key = self.word()?;
                    e = Expr::Member(Box::new(e), key);
                }
                Some(b'[') => {
                    self.at += 1;
                    let index = self.pipe()?;
                    self.expect("]")?;
                    e = match index {
                        Expr::Str(key) => Expr::Member(Box::new(e), key),
                        index => Expr::Index(Box::new(e), Box::new(index)),
                    };
                }
                _ => return Some(e),
            }
        }
    }

    fn word(&mut self) -> Option<String> {
        let start = self.at;
        while self
            .s
            .get(self.at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            self.at += 1;
        }
        (self.at > start).then(|| String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }

    fn list<T>(&mut self, close: &str, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let mut items = Vec::new();
        if self.eat(close) {
            return Some(items);
        }
        loop {
            items.push(item(self)?);
            if self.eat(close) {
                return Some(items);
            }
            self.expect(",")?;
        }
    }

    fn primary(&mut self) -> Option<Expr> {
        let c = self.peek()?;
        match c {
            b'"' | b'\'' => self.string(c).map(Expr::Str),
            b'0'..=b'9' => {
                let start = self.at;
                while self.s.get(self.at).is_some_and(|b| b.is_ascii_digit() || *b == b'.') {
                    self.at += 1;
                }
                let n = String::from_utf8_lossy(&self.s[start..self.at]).into_owned();
                n.parse::<f64>().ok()?;
                Some(Expr::Num(n))
            }
            b'%' => {
                self.at += 1;
                Some(Expr::Hole)
            }
            b'(' => {
                self.at += 1;
                let e = self.pipe()?;
                self.expect(")")?;
                Some(e)
            }
            b'[' => {
                self.at += 1;
                self.list("]", Self::pipe).map(Expr::List)
            }
            b'{' => {
                self.at += 1;
                self.list("}", |p| {
                    let key = p.pipe()?;
                    p.expect(":")?;
                    Some((key, p.pipe()?))
                })
                .map(Expr::Object)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let word = self.word()?;
                if self.peek() == Some(b'(')
                    && word
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                {
                    self.at += 1;
                    if word == "LAMBDA" {
                        let mut parts = self.list(")", Self::pipe)?;
                        let body = parts.pop()?;
                        let params = parts
                            .into_iter()
                            .map(|p| match p {
                                Expr::Name(n) => Some(n),
                                _ => None,
                            })
                            .collect::<Option<Vec<_>>>()?;
                        return Some(Expr::Lambda(params, Box::new(body)));
                    }
                    let args = self.list(")", Self::pipe)?;
                    return Some(Expr::Call(word, args));
                }
                Some(match word.as_str() {
                    "TRUE" | "true" => Expr::Word("true"),
                    "FALSE" | "false" => Expr::Word("false"),
                    "NULL" | "null" | "NIL" | "nil" => Expr::Word("nil"),
                    _ => Expr::Name(word),
                })
            }
            _ => None,
        }
    }

    /// A quoted string with `\n`, `\t`, `\\` and escaped quotes.
    fn string(&mut self, quote: u8) -> Option<String> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let b = *self.s.get(self.at)?;
            self.at += 1;
            match b {
                b'\\' => {
                    let e = *self.s.get(self.at)?;
                    self.at += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        other => other,
                    });
                }
                b if b == quote => return String::from_utf8(out).ok(),
                b => out.push(b),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_functions_become_filter_chains() {
        assert_eq!(
            field(r#"DATE("now", "%Y-%m")"#).as_deref(),
            Some(r#"{{ "now" | date: "%Y-%m" | as_object }}"#)
        );
        assert_eq!(
            field(r#"SPLIT(REMOVE(a.ids, " "), ",")"#).as_deref(),
            Some(r#"{{ a.ids | remove: " " | split: "," | as_object }}"#)
        );
        assert_eq!(
            field(r#"DEFAULT(FORCE_ARRAY(INPUT.read_access)[0], "TEAM")"#).as_deref(),
            Some(r#"{% assign _v1 = INPUT.read_access | force_array %}{{ _v1[0] | default: "TEAM" | as_object }}"#)
        );
        let mut n = 0;
        assert_eq!(pill("TEXT(a.b)", &mut n).as_deref(), Some("{{ a.b }}"));
        assert_eq!(
            pill(r#"a.x & "_" & b.y"#, &mut n).as_deref(),
            Some(r#"{{ a.x | append: "_" | append: b.y }}"#)
        );
        assert_eq!(
            pill("PLUS(counter.n, 1) * 2", &mut n).as_deref(),
            Some("{{ counter.n | plus: 1 | times: 2 }}")
        );
    }

    #[test]
    fn pipes_read_their_left_side_as_percent() {
        assert_eq!(
            field(r#"m.body |> WHERE(%, "metric", "bugs")[0].value |> NUMBER(%)"#).as_deref(),
            Some(r#"{% assign _v1 = m.body | where: "metric", "bugs" %}{{ _v1[0].value | plus: 0 | as_object }}"#)
        );
    }

    #[test]
    fn if_and_conditions_become_tags() {
        assert_eq!(
            field(r#"IF(INPUT.order[0] = "Ascending", "ASC", "DESC")"#).as_deref(),
            Some(
                r#"{% if INPUT.order[0] == "Ascending" %}{% assign _v1 = "ASC" %}{% else %}{% assign _v1 = "DESC" %}{% endif %}{{ _v1 | as_object }}"#
            )
        );
        assert_eq!(
            condition("IS_PRESENT(r.body.meta.next_page)").as_deref(),
            Some("{% if r.body.meta.next_page != blank %}true{% else %}false{% endif %}")
        );
    }

    #[test]
    fn lambdas_become_loops_and_literals_filters() {
        assert_eq!(
            field("REJECT(LOCAL.all, LAMBDA(item, OR(item = NULL, IS_EMPTY(item))))").as_deref(),
            Some(concat!(
                r#"{% assign _v2 = LOCAL.all | type %}{% if _v2 == "Hash" %}"#,
                r#"{% assign _v1 = "{}" | json_parse %}{% for _v3 in LOCAL.all %}"#,
                r#"{% unless _v3[1] == nil or _v3[1] == empty %}{% assign _v1 = _v1 | set_key: _v3[0], _v3[1] %}{% endunless %}{% endfor %}"#,
                r#"{% else %}{% assign _v1 = "[]" | json_parse %}{% for item in LOCAL.all %}"#,
                r#"{% unless item == nil or item == empty %}{% assign _v1 = _v1 | push: item %}{% endunless %}{% endfor %}"#,
                r#"{% endif %}{{ _v1 | as_object }}"#
            ))
        );
        assert_eq!(
            field(r#"OBJECT("a b", x.y, "n", [1, x.z])"#).as_deref(),
            Some(
                r#"{% assign _v1 = "[]" | json_parse | push: 1 | push: x.z %}{{ "{}" | json_parse | set_key: "a b", x.y | set_key: "n", _v1 | as_object }}"#
            )
        );
    }

    #[test]
    fn switch_keys_and_lambda_parameters_stay_in_their_place() {
        // A computed key is computed before the `case`, not in the branch before it.
        let switch = field(r#"SWITCH(k, "a", 1, IF(flag, "b", "c"), 2, 3)"#).expect("translates");
        let case_at = switch.find("{% case").expect("case");
        assert!(switch[..case_at].contains("{% if flag %}"), "{switch}");
        // In the object branch the parameter is read as the pair's value, never assigned.
        let reject = field("REJECT(o, LAMBDA(b, IS_EMPTY(b)))").expect("translates");
        assert!(!reject.contains("assign b ="), "{reject}");
        assert!(reject.contains("_v3[1] == empty"), "{reject}");
    }

    #[test]
    fn what_has_no_liquid_reading_is_refused() {
        assert_eq!(field(r#"FILTER(l, LAMBDA(e, MATCH(e.email, "gov")))"#), None);
        assert_eq!(field(r#"DATE("1 days ago")"#), None);
        assert_eq!(field("a +"), None);
        assert_eq!(field(r#""%}""#), None);
        assert_eq!(field("CREDENTIAL.{my-credential}"), None);
    }
}
