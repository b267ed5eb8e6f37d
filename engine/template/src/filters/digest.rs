//! Digests and HMACs of the UTF-8 bytes of the input, as lowercase hex or
//! standard base64 (`md5_base64` is what a `Content-MD5` header wants).

use hmac::{Hmac, Mac};
use liquid_core::{Result, Value, ValueView};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::encoding::encode_base64;
use super::{arg_text, fail, input_text};

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

macro_rules! hmac_fn {
    ($name:ident, $digest:ty) => {
        /// The HMAC of `data` with `key`.
        pub(crate) fn $name(key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
            let mut mac = <Hmac<$digest> as Mac>::new_from_slice(key)
                .map_err(|_| liquid_core::Error::with_msg("invalid HMAC key"))?;
            mac.update(data);
            Ok(mac.finalize().into_bytes().to_vec())
        }
    };
}

/// Lowercase hex HMAC-SHA256 of `data` (also what webhook signatures check).
pub fn hmac_sha256_hex(key: &[u8], data: &[u8]) -> String {
    // An HMAC takes a key of any length: this cannot fail.
    hex(&hmac_sha256_bytes(key, data).unwrap_or_default())
}

/// Lowercase hex HMAC-SHA1 of `data`.
pub fn hmac_sha1_hex(key: &[u8], data: &[u8]) -> String {
    hex(&hmac_sha1_bytes(key, data).unwrap_or_default())
}

hmac_fn!(hmac_sha1_bytes, Sha1);
hmac_fn!(hmac_sha256_bytes, Sha256);
hmac_fn!(hmac_sha384_bytes, Sha384);
hmac_fn!(hmac_sha512_bytes, Sha512);

/// Applies `f` to the input's bytes; nil stays nil.
fn digest_filter(name: &str, input: &dyn ValueView, f: impl Fn(&[u8]) -> String) -> Result<Value> {
    match input_text(name, input)? {
        None => Ok(Value::Nil),
        Some(text) => Ok(Value::scalar(f(text.as_bytes()))),
    }
}

pub(super) fn sha256(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    digest_filter("sha256", input, |b| hex(&Sha256::digest(b)))
}

pub(super) fn sha1(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    digest_filter("sha1", input, |b| hex(&Sha1::digest(b)))
}

pub(super) fn sha512(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    digest_filter("sha512", input, |b| hex(&Sha512::digest(b)))
}

pub(super) fn md5(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    digest_filter("md5", input, |b| hex(&Md5::digest(b)))
}

pub(super) fn md5_base64(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    digest_filter("md5_base64", input, |b| encode_base64(&Md5::digest(b)))
}

/// The HMAC filters: the key is required (an empty key is allowed, as in
/// Ruby's `OpenSSL::HMAC`); nil input stays nil. A second argument `'base64'`
/// says the key is the Base64 of binary key bytes (Azure's SharedKey, whose
/// decoded bytes are not text); `'hex'` likewise for hexadecimal.
fn hmac_filter(
    name: &str,
    input: &dyn ValueView,
    args: &[Value],
    mac: fn(&[u8], &[u8]) -> Result<Vec<u8>>,
    encode: fn(&[u8]) -> String,
) -> Result<Value> {
    let key = arg_text(name, args, 0, "key")?.ok_or_else(|| fail(name, "the key is nil"))?;
    // A dry run's stand-in for a credential (`[credential:name]`) is no
    // Base64 or hex: it signs as text, so the dry run goes on.
    let placeholder = key.starts_with("[credential:") && key.ends_with(']');
    let key: Vec<u8> = match arg_text(name, args, 1, "key encoding")?.as_deref() {
        None | Some("text") => key.into_bytes(),
        Some(_) if placeholder => key.into_bytes(),
        Some("base64") => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|e| fail(name, format!("the key is not Base64: {e}")))?
        }
        Some("hex") => decode_hex(key.trim()).ok_or_else(|| fail(name, "the key is not hexadecimal"))?,
        Some(other) => {
            return Err(fail(
                name,
                format!("unknown key encoding `{other}` (text, base64 or hex)"),
            ));
        }
    };
    let Some(text) = input_text(name, input)? else {
        return Ok(Value::Nil);
    };
    let bytes = mac(&key, text.as_bytes()).map_err(|e| fail(name, e))?;
    Ok(Value::scalar(encode(&bytes)))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `bytesize`: the length of a text in UTF-8 bytes (Ruby's `String#bytesize`),
/// what `Content-Length` counts; `size` counts characters in Tines.
pub(super) fn bytesize(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    Ok(match input_text("bytesize", input)? {
        Some(text) => Value::scalar(text.len() as i64),
        None => Value::Nil,
    })
}

pub(super) fn hmac_sha256(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    hmac_filter("hmac_sha256", input, args, hmac_sha256_bytes, hex)
}

pub(super) fn hmac_sha256_base64(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    hmac_filter("hmac_sha256_base64", input, args, hmac_sha256_bytes, encode_base64)
}

pub(super) fn hmac_sha1(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    hmac_filter("hmac_sha1", input, args, hmac_sha1_bytes, hex)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{fails, table};

    #[test]
    fn digests() {
        table(
            json!({"n": null, "num": 42}),
            &[
                (
                    "{{ 'abc' | sha256 }}",
                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                ),
                (
                    "{{ '' | sha256 }}",
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                ),
                ("{{ 'abc' | sha1 }}", "a9993e364706816aba3e25717850c26c9cd0d89d"),
                ("{{ '' | sha1 }}", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
                (
                    "{{ 'abc' | sha512 }}",
                    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
                ),
                ("{{ 'abc' | md5 }}", "900150983cd24fb0d6963f7d28e17f72"),
                ("{{ '' | md5 }}", "d41d8cd98f00b204e9800998ecf8427e"),
                ("{{ '' | md5_base64 }}", "1B2M2Y8AsgTpgAmY7PhCfg=="),
                ("{{ 'abc' | md5_base64 }}", "kAFQmDzST7DWlj99KOF/cg=="),
                // UTF-8 bytes are hashed
                (
                    "{{ 'é' | sha256 }}",
                    "4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c",
                ),
                // numbers are hashed as their text
                ("{{ num | md5 }}", "a1d0c6e83f027327d8461063f4ac58a6"),
                ("{{ n | sha256 }}", ""),
                ("{{ n | md5_base64 }}", ""),
            ],
        );
    }

    #[test]
    fn hmacs() {
        // RFC 4231 test case 2 and RFC 2202 test case 2
        table(
            json!({
                "data": "what do ya want for nothing?",
                "n": null,
                "sts": "POST\n1024\napplication/json\nx-ms-date:Mon, 04 Apr 2016 08:00:00 GMT\n/api/logs",
                "key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==",
            }),
            &[
                (
                    "{{ data | hmac_sha256: 'Jefe' }}",
                    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                ),
                (
                    "{{ data | hmac_sha256_base64: 'Jefe' }}",
                    "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=",
                ),
                (
                    "{{ data | hmac_sha1: 'Jefe' }}",
                    "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
                ),
                // an empty key is a valid HMAC key
                (
                    "{{ '' | hmac_sha256: '' }}",
                    "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
                ),
                ("{{ n | hmac_sha256: 'k' }}", ""),
                // RFC 4231 test case 2 again, the key given as Base64 and as hex
                (
                    "{{ data | hmac_sha256: 'SmVmZQ==', 'base64' }}",
                    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                ),
                (
                    "{{ data | hmac_sha256: '4a656665', 'hex' }}",
                    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                ),
                // Azure Data Collector vector A (binary key 0x00..0x3F)
                (
                    "{{ sts | hmac_sha256_base64: key, 'base64' }}",
                    "kQfMluP3yBFQzfwH0Ye5adOjNq2FCEIWGh0n4uEtCrg=",
                ),
                ("{{ 'München' | bytesize }}", "8"),
                ("{{ n | bytesize }}", ""),
            ],
        );
        fails(
            "{{ 'x' | hmac_sha256: 'k', 'rot13' }}",
            json!({}),
            "hmac_sha256: unknown key encoding `rot13`",
        );
        fails(
            "{{ 'x' | hmac_sha256: '@@', 'base64' }}",
            json!({}),
            "hmac_sha256: the key is not Base64",
        );
    }

    #[test]
    fn wrong_types() {
        fails(
            "{{ a | sha256 }}",
            json!({"a": [1]}),
            "sha256: expected text, got an array",
        );
        fails("{{ o | md5 }}", json!({"o": {}}), "md5: expected text, got an object");
        fails(
            "{{ 'x' | hmac_sha256: k }}",
            json!({"k": null}),
            "hmac_sha256: the key is nil",
        );
        fails(
            "{{ 'x' | hmac_sha1: k }}",
            json!({"k": [1]}),
            "hmac_sha1: the key must be text, got an array",
        );
    }
}
