//! `jwt_sign: key, algorithm?, headers?`: a signed JSON Web Token for the
//! input claim set, as Tines documents it: `RS256` by default with a PEM
//! private key, `HS256` with a shared secret
//! (`{{ claims | jwt_sign: CREDENTIAL.key }}`,
//! `{{ claims | jwt_sign: CREDENTIAL.secret, 'HS256', extra_headers }}`).
//! `RS384`, `RS512`, `HS384` and `HS512` work too.
//!
//! The header is `{"alg": …}` plus the extra header fields, with no `typ`,
//! as Ruby's jwt gem (which Tines uses) writes it. Keys of the header and of
//! the claims are written in sorted order.
//!
//! The RSA key is PEM, PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA
//! PRIVATE KEY`); line breaks may be missing or written as `\n` (as when a
//! key is pasted from a JSON service-account file). Encrypted keys are not
//! supported. Signing is pure Rust (`rsa` crate, PKCS#1 v1.5).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use liquid_core::{Result, Value, ValueView};
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::Value as J;
use sha2::{Sha256, Sha384, Sha512};

use super::digest::{hmac_sha256_bytes, hmac_sha384_bytes, hmac_sha512_bytes};
use super::encoding::decode_base64;
use super::{Kind, arg_text, fail, from_json, kind, to_json, type_label};

const NAME: &str = "jwt_sign";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Algorithm {
    Hs256,
    Hs384,
    Hs512,
    Rs256,
    Rs384,
    Rs512,
}

impl Algorithm {
    fn parse(name: &str) -> Option<Self> {
        Some(match name.trim().to_ascii_uppercase().as_str() {
            "HS256" => Algorithm::Hs256,
            "HS384" => Algorithm::Hs384,
            "HS512" => Algorithm::Hs512,
            "RS256" => Algorithm::Rs256,
            "RS384" => Algorithm::Rs384,
            "RS512" => Algorithm::Rs512,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Hs384 => "HS384",
            Algorithm::Hs512 => "HS512",
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
        }
    }
}

pub(super) fn jwt_sign(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    let key = arg_text(NAME, args, 0, "key")?.ok_or_else(|| fail(NAME, "the key is nil"))?;
    let algorithm = match arg_text(NAME, args, 1, "algorithm")? {
        None => Algorithm::Rs256,
        Some(name) if name.trim().is_empty() => Algorithm::Rs256,
        Some(name) => Algorithm::parse(&name).ok_or_else(|| {
            fail(
                NAME,
                format!("unknown algorithm `{name}` (RS256, RS384, RS512, HS256, HS384 or HS512)"),
            )
        })?,
    };
    let mut header: BTreeMap<String, J> = match args.get(2) {
        None => BTreeMap::new(),
        Some(extra) => match to_json(extra) {
            J::Null => BTreeMap::new(),
            J::Object(map) => map.into_iter().collect(),
            _ => {
                return Err(fail(
                    NAME,
                    format!("the headers must be an object, got {}", type_label(extra)),
                ));
            }
        },
    };
    header.insert("alg".to_owned(), J::String(algorithm.name().to_owned()));
    let header = J::Object(header.into_iter().collect());

    let claims = claims(input)?;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(algorithm, &key, signing_input.as_bytes())?;
    Ok(Value::scalar(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    )))
}

/// The claim set: an object, or JSON text of one.
fn claims(input: &dyn ValueView) -> Result<J> {
    let value = match kind(input) {
        Kind::Object(_) => to_json(input),
        Kind::Scalar(s) if s.type_name() == "string" => {
            let parsed = serde_json::from_str::<J>(&s.into_cow_str())
                .map_err(|e| fail(NAME, format!("the claims are not valid JSON: {e}")))?;
            // through Liquid and back: keys in sorted order, as for an object
            to_json(&from_json(parsed))
        }
        _ => {
            return Err(fail(
                NAME,
                format!("expected the claims as an object, got {}", type_label(input)),
            ));
        }
    };
    if value.is_object() {
        Ok(value)
    } else {
        Err(fail(NAME, "the claims must be a JSON object"))
    }
}

fn sign(algorithm: Algorithm, key: &str, data: &[u8]) -> Result<Vec<u8>> {
    let mac = |f: fn(&[u8], &[u8]) -> Result<Vec<u8>>| f(key.as_bytes(), data).map_err(|e| fail(NAME, e));
    match algorithm {
        Algorithm::Hs256 => mac(hmac_sha256_bytes),
        Algorithm::Hs384 => mac(hmac_sha384_bytes),
        Algorithm::Hs512 => mac(hmac_sha512_bytes),
        Algorithm::Rs256 => rsa_sign::<Sha256>(key, data),
        Algorithm::Rs384 => rsa_sign::<Sha384>(key, data),
        Algorithm::Rs512 => rsa_sign::<Sha512>(key, data),
    }
}

fn rsa_sign<D>(key: &str, data: &[u8]) -> Result<Vec<u8>>
where
    D: sha2::Digest + rsa::pkcs8::AssociatedOid,
{
    let signing_key = SigningKey::<D>::new(private_key(key)?);
    let signature: rsa::pkcs1v15::Signature = signing_key
        .try_sign(data)
        .map_err(|e| fail(NAME, format!("RSA signing failed: {e}")))?;
    Ok(signature.to_bytes().into_vec())
}

/// Reads a PEM RSA private key. Error messages never quote the key.
fn private_key(pem: &str) -> Result<RsaPrivateKey> {
    let text = pem.replace("\\n", "\n");
    let not_pem = || {
        fail(
            NAME,
            "the key is not a PEM RSA private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----); HS256 takes a shared secret",
        )
    };
    let begin = text.find("-----BEGIN ").ok_or_else(not_pem)?;
    let after = &text[begin + "-----BEGIN ".len()..];
    let label_end = after.find("-----").ok_or_else(not_pem)?;
    let label = after[..label_end].trim();
    let body = &after[label_end + "-----".len()..];
    let body = &body[..body.find("-----END").unwrap_or(body.len())];
    if body.contains("Proc-Type") || label.contains("ENCRYPTED") {
        return Err(fail(NAME, "encrypted private keys are not supported"));
    }
    let der = decode_base64(body).ok_or_else(not_pem)?;
    let key = match label {
        "RSA PRIVATE KEY" => RsaPrivateKey::from_pkcs1_der(&der).map_err(|e| e.to_string()),
        "PRIVATE KEY" => RsaPrivateKey::from_pkcs8_der(&der).map_err(|e| e.to_string()),
        other => {
            return Err(fail(
                NAME,
                format!("a `{other}` key cannot sign RS256: an RSA private key is needed"),
            ));
        }
    };
    key.map_err(|why| fail(NAME, format!("the private key does not decode: {why}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{fails, ok, table};

    /// A 2048-bit RSA key made for these tests only (PKCS#8).
    const TEST_KEY_PKCS8: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDNLyTLC7mHu5Lz
Q8VDA3gVXb/Nm3NgNmFHmm9Mw9eQOsOcjej/DuAJSDBp34c1i9QDjcNHnbz+cQmR
bFs3xQFJY5JgCgwdmX/JWge4q5WcHUPS7+8Vzs+gART+2fbTHM5QdCFVSyhvjMsr
iaKNY/xnKCt9CjzAwTWRsTqCNcjQ84syoJeHVmq3oVYj+fglOPT1P3ZUyLUhoOeD
oQdofsn/ogugSn3uOQnNfQTAyzcwUDEcXsZjJwVo7ObmLudGIxJIPaJ+2+Gj4Uq8
7DmoIoN6YLWe5jHyluA4HoenWlTeN0FpxfVmIctsObT9sSOLphup8pnacx7afz5o
rF0l46GPAgMBAAECggEAAKyK6jsqWcv1Gzp2QwhCKarqclJJrebW8Gj/EdI03jvO
vQVppgVIGXNC+lbxWpeCDJ0pUhxK0FxDsiumcw65/6Ia7tG32iMKACR9EQEsLLG3
sXv3ukCqt2AdFwrHByxkN4xwVLQBjg2VgtK2TpgJbn5tV3oV9x09I4f9OkSaZ8Tb
hyyk0Qmoio9aMb2Pb/J5JUfV0FUY8hFMACmVjWovELFwSnpl8TQ6o6hD2Htklx1K
ntsQaXaltGIgzXCBPrnx0bszv0w79MfO325HLh8jnMimCsHOjY+ypYEzNpGUAp4L
VeN8rg+K968RxKTH8fatWSrjTc8IAWLNNVMCOlXPlQKBgQDpVPFhye6+oBif+AoW
UlyQwB9K3/WxcJC8b9h1GeGNofeTmPza/1sBBigmdRh0pqgjkcWWXOAVnISnjLAz
ThGvX90dKWiKiVQSlAK6IuHYkVDd26aF0t5CpbiBbwnH0b6QAEiVXoHyeai9aEa3
RYjP1Y0yyFre8+I659TqWcybCwKBgQDhHihAOfdmmMAq7e4Vzr07E+sB93kqmwok
MFrH8+QUrN9nz0D7Et301IatccxOlfPyJdQhD6djo6VmgvLB1PXZaqF84Kun0SuG
n+nDOUuN3h12CIgsP2XrfEBOgV2riUTBnJIJsVfviUgWxufXAewrcc+rFN4A6FzA
wrbRDwiGDQKBgQDhl3nFZRpJ/bmxOHxwNnM+lDHtD3mZc87MEYsDNOGpMRaQApM+
HTNcWxqIjB/38IWR1kdl6CfTXT+4SsK0598bYyECJ93mS34YdDfqxPz8iQrZZZur
uUOgxl8L7VJUekq3KT8EA5q517w4XFA6s6Th5IOevK127+8jqq9lYSr8HwKBgE6F
IU79qQB9KRIQOWob2T8g/GiMNBQbTdc/knqJ5DUd8zKXRLgOZaK++lbHCZcjkJoW
fb4mYqFLdCakaB4ZtMLoAXm4N8dqGv9zCatRcbwDDE2ePjkIx/jyNs/rKYvqbjQF
854z4FMplB51tGn3PrQMl3254pF4etm1UOTslHGFAoGBANJ/QbliGqi0MRYbru74
3p8w32RWMGcB+4Gn4ckLAetL/HVuisCJIDvqGV+HgCQmd/a+OCmUxKpKbxRwoAki
aVFbcefmP5hoqmzTQoT0kjq6qgM4E2/B4B/eqVLh9e96WzEL/ukxk2vPYmnf0HWO
uYh97j+S9W1Yf9OZW9A1NwN/
-----END PRIVATE KEY-----
";

    /// The same key as PKCS#1.
    const TEST_KEY_PKCS1: &str = r"-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAzS8kywu5h7uS80PFQwN4FV2/zZtzYDZhR5pvTMPXkDrDnI3o
/w7gCUgwad+HNYvUA43DR528/nEJkWxbN8UBSWOSYAoMHZl/yVoHuKuVnB1D0u/v
Fc7PoAEU/tn20xzOUHQhVUsob4zLK4mijWP8ZygrfQo8wME1kbE6gjXI0POLMqCX
h1Zqt6FWI/n4JTj09T92VMi1IaDng6EHaH7J/6ILoEp97jkJzX0EwMs3MFAxHF7G
YycFaOzm5i7nRiMSSD2iftvho+FKvOw5qCKDemC1nuYx8pbgOB6Hp1pU3jdBacX1
ZiHLbDm0/bEji6YbqfKZ2nMe2n8+aKxdJeOhjwIDAQABAoIBAACsiuo7KlnL9Rs6
dkMIQimq6nJSSa3m1vBo/xHSNN47zr0FaaYFSBlzQvpW8VqXggydKVIcStBcQ7Ir
pnMOuf+iGu7Rt9ojCgAkfREBLCyxt7F797pAqrdgHRcKxwcsZDeMcFS0AY4NlYLS
tk6YCW5+bVd6FfcdPSOH/TpEmmfE24cspNEJqIqPWjG9j2/yeSVH1dBVGPIRTAAp
lY1qLxCxcEp6ZfE0OqOoQ9h7ZJcdSp7bEGl2pbRiIM1wgT658dG7M79MO/THzt9u
Ry4fI5zIpgrBzo2PsqWBMzaRlAKeC1XjfK4PivevEcSkx/H2rVkq403PCAFizTVT
AjpVz5UCgYEA6VTxYcnuvqAYn/gKFlJckMAfSt/1sXCQvG/YdRnhjaH3k5j82v9b
AQYoJnUYdKaoI5HFllzgFZyEp4ywM04Rr1/dHSloiolUEpQCuiLh2JFQ3dumhdLe
QqW4gW8Jx9G+kABIlV6B8nmovWhGt0WIz9WNMsha3vPiOufU6lnMmwsCgYEA4R4o
QDn3ZpjAKu3uFc69OxPrAfd5KpsKJDBax/PkFKzfZ89A+xLd9NSGrXHMTpXz8iXU
IQ+nY6OlZoLywdT12WqhfOCrp9Erhp/pwzlLjd4ddgiILD9l63xAToFdq4lEwZyS
CbFX74lIFsbn1wHsK3HPqxTeAOhcwMK20Q8Ihg0CgYEA4Zd5xWUaSf25sTh8cDZz
PpQx7Q95mXPOzBGLAzThqTEWkAKTPh0zXFsaiIwf9/CFkdZHZegn010/uErCtOff
G2MhAifd5kt+GHQ36sT8/IkK2WWbq7lDoMZfC+1SVHpKtyk/BAOaude8OFxQOrOk
4eSDnrytdu/vI6qvZWEq/B8CgYBOhSFO/akAfSkSEDlqG9k/IPxojDQUG03XP5J6
ieQ1HfMyl0S4DmWivvpWxwmXI5CaFn2+JmKhS3QmpGgeGbTC6AF5uDfHahr/cwmr
UXG8AwxNnj45CMf48jbP6ymL6m40BfOeM+BTKZQedbRp9z60DJd9ueKReHrZtVDk
7JRxhQKBgQDSf0G5YhqotDEWG67u+N6fMN9kVjBnAfuBp+HJCwHrS/x1borAiSA7
6hlfh4AkJnf2vjgplMSqSm8UcKAJImlRW3Hn5j+YaKps00KE9JI6uqoDOBNvweAf
3qlS4fXvelsxC/7pMZNrz2Jp39B1jrmIfe4/kvVtWH/TmVvQNTcDfw==
-----END RSA PRIVATE KEY-----
";

    /// Tokens computed independently (Python `hmac` and `cryptography`) for
    /// the header `{"alg":…}` and the claims
    /// `{"iat":1516239022,"name":"John Doe","sub":"1234567890"}`.
    const HS256: &str = "eyJhbGciOiJIUzI1NiJ9.eyJpYXQiOjE1MTYyMzkwMjIsIm5hbWUiOiJKb2huIERvZSIsInN1YiI6IjEyMzQ1Njc4OTAifQ.OuVIqTRsRjqhEbiIlzHGNJE0yz6QsUk2u9tm561lans";
    const HS256_KID: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImtleS0xIn0.eyJpYXQiOjE1MTYyMzkwMjIsIm5hbWUiOiJKb2huIERvZSIsInN1YiI6IjEyMzQ1Njc4OTAifQ.SQB-jLqoceWopjIbVz1gFxSuSRV_SS-Bcey4PqQmCxU";
    const HS512: &str = "eyJhbGciOiJIUzUxMiJ9.eyJpYXQiOjE1MTYyMzkwMjIsIm5hbWUiOiJKb2huIERvZSIsInN1YiI6IjEyMzQ1Njc4OTAifQ.neXxWYHjtVCj3pC_ypqoSI7gAYWUrbUe95Hya0dHlErkodHbOcn2b8ATfoMhYPsjTewdAMZemtUBM7sElanu2w";
    const RS256: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpYXQiOjE1MTYyMzkwMjIsIm5hbWUiOiJKb2huIERvZSIsInN1YiI6IjEyMzQ1Njc4OTAifQ.B0aIQZU7w0u25zu2pr3C8EhQAXC6EuH7T6qKtjn7rfttHgyEUGV5nXUKR2mOVIqEtRFGRnNIFLs_66R6ha_5IyuCH3Xnql6V1s1rqqrz3ERNJEZ1CPrQwh8K6nGzt79yWIditKWMRO49LfvlIxfMEIMsw8GnN8T7nPieFZe1L1EnZiq8QBY2QrTTg8oyvN_KIjj_muUWI7Nuw01iMsg8mLkQMDSFB8L6B__5lINL-HivNOH6uPuwevPsXAoQlUNxMVDfVSln0RGox2GetnVX6e3-weFJAYXkhVJImz0gwN37D83L4DdZ1422LF9xdZjHMrBvHc64cphsdWO30loofQ";
    const RS512: &str = "eyJhbGciOiJSUzUxMiJ9.eyJpYXQiOjE1MTYyMzkwMjIsIm5hbWUiOiJKb2huIERvZSIsInN1YiI6IjEyMzQ1Njc4OTAifQ.SUBckELeNYPu___N-FSIqOr_EMwT6iWUJXXXGDIuLNODGUrKJpnfjbHNuit-8PRhqlOkjbN3thg1bX3_LO8zo-AJAk4vlcHzzo5oELc30HChnx2jsZVHZgHhGkJ9NslYRaNLM59VhxXpPM50SCZw5bllgQasLja7X-YtQOs7YC1VPAf-VViVPuVdUF8o0SDaiSDV3-zJgFmVcPh7cmd1eiqflE9yZ5glmEOZxrHLwK3GKvlrjmrgSOMz91ArulwxZ7-MGqC-MtJsTfhM5g_W5wei9U8ibHnmS1tRjN5gE2NpmxSJvUMJH9DLD590GtTURw_mMlrZMS3QK8vwe0JWZw";

    fn data() -> serde_json::Value {
        json!({
            "claims": {"sub": "1234567890", "name": "John Doe", "iat": 1516239022},
            "secret": "your-256-bit-secret",
            "pkcs8": TEST_KEY_PKCS8,
            "pkcs1": TEST_KEY_PKCS1,
            "pkcs8_escaped": TEST_KEY_PKCS8.replace('\n', "\\n"),
            "extra": {"kid": "key-1"},
            "n": null,
        })
    }

    #[test]
    fn hs256_matches_known_tokens() {
        table(
            data(),
            &[
                ("{{ claims | jwt_sign: secret, 'HS256' }}", HS256),
                ("{{ claims | jwt_sign: secret, 'hs256', extra }}", HS256_KID),
                ("{{ claims | jwt_sign: secret, 'HS512' }}", HS512),
                // JSON text is accepted as the claims
                (
                    r#"{{ '{"sub":"1234567890","name":"John Doe","iat":1516239022}' | jwt_sign: secret, 'HS256' }}"#,
                    HS256,
                ),
            ],
        );
    }

    #[test]
    fn rs256_is_the_default() {
        let expected = RS256;
        table(
            data(),
            &[
                ("{{ claims | jwt_sign: pkcs8 }}", expected),
                ("{{ claims | jwt_sign: pkcs8, 'RS256' }}", expected),
                ("{{ claims | jwt_sign: pkcs1 }}", expected),
                ("{{ claims | jwt_sign: pkcs8_escaped }}", expected),
            ],
        );
        let rs512 = ok("{{ claims | jwt_sign: pkcs8, 'RS512' }}", data());
        assert_eq!(rs512, RS512);
    }

    #[test]
    fn errors() {
        fails(
            "{{ claims | jwt_sign: secret }}",
            data(),
            "jwt_sign: the key is not a PEM RSA private key",
        );
        fails(
            "{{ claims | jwt_sign: secret, 'ES256' }}",
            data(),
            "jwt_sign: unknown algorithm `ES256`",
        );
        fails(
            "{{ claims | jwt_sign: n, 'HS256' }}",
            data(),
            "jwt_sign: the key is nil",
        );
        fails(
            "{{ n | jwt_sign: secret, 'HS256' }}",
            data(),
            "jwt_sign: expected the claims as an object, got nil",
        );
        fails(
            "{{ 'not json' | jwt_sign: secret, 'HS256' }}",
            data(),
            "jwt_sign: the claims are not valid JSON",
        );
        fails(
            "{{ '[1]' | jwt_sign: secret, 'HS256' }}",
            data(),
            "jwt_sign: the claims must be a JSON object",
        );
        fails(
            "{{ claims | jwt_sign: secret, 'HS256', secret }}",
            data(),
            "jwt_sign: the headers must be an object",
        );
        fails(
            "{{ claims | jwt_sign: '-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----' }}",
            data(),
            "jwt_sign: a `EC PRIVATE KEY` key cannot sign RS256",
        );
        fails(
            "{{ claims | jwt_sign: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----' }}",
            data(),
            "jwt_sign: the private key does not decode",
        );
    }
}
