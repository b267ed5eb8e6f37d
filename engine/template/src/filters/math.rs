//! `plus`, `minus`, `times`, `divided_by`, `modulo` as Ruby Liquid (and so
//! Tines) compute them: an operand that is not a number counts as 0 (nil,
//! words; text starting with digits counts as those digits), whole numbers
//! stay whole (`divided_by` floors), and dividing by zero is an error. The
//! Liquid library fails with "Invalid input" on nil instead, which broke
//! counters that start empty (`{{ counter.count | plus: 1 }}`).

use liquid_core::{Error, Result, Value, ValueView};

use super::{Kind, kind};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn float(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

/// Ruby Liquid's `Utils.to_number`.
fn number(value: &dyn ValueView) -> Num {
    let Kind::Scalar(s) = kind(value) else {
        return Num::Int(0);
    };
    match value.type_name() {
        "boolean" => return Num::Int(0),
        "fractional number" => return s.to_float().map_or(Num::Int(0), Num::Float),
        "whole number" => return s.to_integer().map_or(Num::Int(0), Num::Int),
        _ => {}
    }
    let text = s.into_cow_str();
    let text = text.trim();
    // `-?\d+\.\d+` is a decimal; anything else is `to_i`: its leading digits.
    let decimal = text
        .strip_prefix('-')
        .unwrap_or(text)
        .split_once('.')
        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()));
    if decimal {
        return text.parse::<f64>().map_or(Num::Int(0), Num::Float);
    }
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let leading: String = digits.chars().take_while(char::is_ascii_digit).collect();
    Num::Int(leading.parse::<i64>().map_or(0, |n| sign * n))
}

fn value(n: Num) -> Value {
    match n {
        Num::Int(i) => Value::scalar(i),
        Num::Float(f) => Value::scalar(f),
    }
}

fn operands(input: &dyn ValueView, args: &[Value]) -> (Num, Num) {
    let rhs = args.first().map_or(Num::Int(0), |a| number(a));
    (number(input), rhs)
}

fn arithmetic(
    input: &dyn ValueView,
    args: &[Value],
    int: fn(i64, i64) -> Option<i64>,
    float: fn(f64, f64) -> f64,
) -> Value {
    match operands(input, args) {
        (Num::Int(a), Num::Int(b)) => value(int(a, b).map_or_else(|| Num::Float(float(a as f64, b as f64)), Num::Int)),
        (a, b) => value(Num::Float(float(a.float(), b.float()))),
    }
}

pub(super) fn plus(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    Ok(arithmetic(input, args, i64::checked_add, |a, b| a + b))
}

pub(super) fn minus(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    Ok(arithmetic(input, args, i64::checked_sub, |a, b| a - b))
}

pub(super) fn times(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    Ok(arithmetic(input, args, i64::checked_mul, |a, b| a * b))
}

pub(super) fn divided_by(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    match operands(input, args) {
        (_, b) if b.float() == 0.0 => Err(Error::with_msg("divided_by: divided by 0")),
        (Num::Int(a), Num::Int(b)) => Ok(value(Num::Int(
            a.div_euclid(b) - i64::from(b < 0 && a.rem_euclid(b) != 0),
        ))),
        (a, b) => Ok(value(Num::Float(a.float() / b.float()))),
    }
}

pub(super) fn modulo(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    match operands(input, args) {
        (_, b) if b.float() == 0.0 => Err(Error::with_msg("modulo: divided by 0")),
        // Ruby: the result takes the divisor's sign.
        (Num::Int(a), Num::Int(b)) => Ok(value(Num::Int(((a % b) + b) % b))),
        (a, b) => {
            let (a, b) = (a.float(), b.float());
            Ok(value(Num::Float(((a % b) + b) % b)))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{fails, table};

    #[test]
    fn arithmetic_follows_ruby_liquid() {
        table(
            json!({"n": null, "word": "abc", "lead": "12abc", "five": "5", "half": "2.5"}),
            &[
                ("{{ n | plus: 1 }}", "1"),
                ("{{ word | times: 2 }}", "0"),
                ("{{ lead | plus: 1 }}", "13"),
                ("{{ five | plus: '3' }}", "8"),
                ("{{ half | times: 2 }}", "5"),
                ("{{ 7 | divided_by: 2 }}", "3"),
                ("{{ -7 | divided_by: 2 }}", "-4"),
                ("{{ 7 | divided_by: -2 }}", "-4"),
                ("{{ 7.0 | divided_by: 2 }}", "3.5"),
                ("{{ -7 | modulo: 3 }}", "2"),
                ("{{ 7 | modulo: -3 }}", "-2"),
                ("{{ 10 | minus: n }}", "10"),
                ("{{ 3 | times: 1.5 }}", "4.5"),
            ],
        );
        fails("{{ 1 | divided_by: 0 }}", json!({}), "divided by 0");
        fails("{{ 1 | modulo: n }}", json!({"n": null}), "divided by 0");
    }
}
