//! The part of Tines' formula language that has a plain Liquid reading:
//! references, text and number literals, and calls of the functions that
//! are Liquid filters by another name, nested in their first argument
//! (`UPCASE(DEFAULT(a.b, "x"))` → `a.b | default: "x" | upcase`). Anything
//! else (`IF`, `LAMBDA`, operators, indexing after a call) is not read:
//! the caller keeps the formula as text and notes it.

/// A formula function and the filter that computes it; whether its value
/// is a structure (a formula field keeps it with `as_object`).
const FUNCTIONS: &[(&str, &str, bool)] = &[
    ("DEFAULT", "default", true),
    ("DATE", "date", false),
    ("SPLIT", "split", true),
    ("UPCASE", "upcase", false),
    ("DOWNCASE", "downcase", false),
    ("REMOVE", "remove", false),
    ("REPLACE", "replace", false),
    ("SIZE", "size", false),
    ("JOIN", "join", false),
    ("FIRST", "first", true),
    ("LAST", "last", true),
    ("URL_ENCODE", "url_encode", false),
    ("BASE64_ENCODE", "base64_encode", false),
    ("BASE64_DECODE", "base64_decode", false),
    ("JSON_PARSE", "json_parse", true),
    ("STRIP", "strip", false),
    ("UNIQ", "uniq", true),
];

#[derive(Debug, PartialEq)]
enum Expr {
    /// A path or a literal, as Liquid writes it.
    Atom(String),
    Call(String, Vec<Expr>),
}

/// The Liquid expression of `formula` (without braces), and whether its
/// value is a structure; `None` when it is not a plain reading.
pub(crate) fn to_liquid(formula: &str) -> Option<(String, bool)> {
    let mut p = Parser {
        s: formula.trim().as_bytes(),
        at: 0,
    };
    let expr = p.expr()?;
    p.space();
    if p.at != p.s.len() {
        return None;
    }
    let structured = match &expr {
        Expr::Call(name, _) => FUNCTIONS.iter().find(|(f, _, _)| f == name).is_some_and(|(_, _, s)| *s),
        Expr::Atom(_) => true,
    };
    Some((liquid(&expr)?, structured))
}

fn liquid(e: &Expr) -> Option<String> {
    match e {
        Expr::Atom(a) => Some(a.clone()),
        Expr::Call(name, args) => {
            // TEXT(x) is x as text: what a pill renders anyway.
            if name == "TEXT" && args.len() == 1 {
                return liquid(&args[0]);
            }
            let (_, filter, _) = FUNCTIONS.iter().find(|(f, _, _)| f == name)?;
            let (first, rest) = args.split_first()?;
            let mut out = liquid(first)?;
            out.push_str(" | ");
            out.push_str(filter);
            for (i, arg) in rest.iter().enumerate() {
                // Later arguments are filter arguments: atoms only.
                let Expr::Atom(a) = arg else { return None };
                out.push_str(if i == 0 { ": " } else { ", " });
                out.push_str(a);
            }
            Some(out)
        }
    }
}

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

    fn expr(&mut self) -> Option<Expr> {
        self.space();
        let c = *self.s.get(self.at)?;
        if c == b'"' || c == b'\'' {
            let start = self.at;
            self.at += 1;
            while *self.s.get(self.at)? != c {
                if self.s[self.at] == b'\\' {
                    return None;
                }
                self.at += 1;
            }
            self.at += 1;
            return Some(Expr::Atom(
                String::from_utf8_lossy(&self.s[start..self.at]).into_owned(),
            ));
        }
        if c.is_ascii_digit() || c == b'-' {
            let start = self.at;
            self.at += 1;
            while self.s.get(self.at).is_some_and(|b| b.is_ascii_digit() || *b == b'.') {
                self.at += 1;
            }
            return Some(Expr::Atom(
                String::from_utf8_lossy(&self.s[start..self.at]).into_owned(),
            ));
        }
        if !(c.is_ascii_alphabetic() || c == b'_') {
            return None;
        }
        let start = self.at;
        while self
            .s
            .get(self.at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'))
        {
            self.at += 1;
        }
        let word = String::from_utf8_lossy(&self.s[start..self.at]).into_owned();
        self.space();
        if self.s.get(self.at) == Some(&b'(') {
            if !word.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                return None;
            }
            self.at += 1;
            let mut args = Vec::new();
            loop {
                self.space();
                if self.s.get(self.at) == Some(&b')') {
                    self.at += 1;
                    break;
                }
                args.push(self.expr()?);
                self.space();
                match self.s.get(self.at)? {
                    b',' => self.at += 1,
                    b')' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
            return Some(Expr::Call(word, args));
        }
        match word.as_str() {
            "TRUE" => Some(Expr::Atom("true".into())),
            "FALSE" => Some(Expr::Atom("false".into())),
            "NULL" => Some(Expr::Atom("nil".into())),
            _ => Some(Expr::Atom(word)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_functions_become_filters() {
        assert_eq!(
            to_liquid(r#"DATE("now", "%Y-%m")"#),
            Some((r#""now" | date: "%Y-%m""#.into(), false))
        );
        assert_eq!(
            to_liquid(r#"SPLIT(REMOVE(a.ids, " "), ",")"#),
            Some((r#"a.ids | remove: " " | split: ",""#.into(), true))
        );
        assert_eq!(to_liquid("TEXT(a.b)"), Some(("a.b".into(), false)));
        assert_eq!(
            to_liquid(r#"DEFAULT(a.b, "x")"#),
            Some((r#"a.b | default: "x""#.into(), true))
        );
    }

    #[test]
    fn the_rest_is_not_read() {
        assert_eq!(to_liquid("IF(a, 1, 2)"), None);
        assert_eq!(to_liquid("DEFAULT(FORCE_ARRAY(a)[0], \"T\")"), None);
        assert_eq!(to_liquid("a & b"), None);
        assert_eq!(to_liquid("DEFAULT(a, UPCASE(b))"), None);
    }
}
