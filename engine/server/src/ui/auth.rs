//! Who may use the web UI. With `TALE_API_TOKEN` set, the UI asks for it
//! once (a login form) and keeps a session cookie (HttpOnly,
//! SameSite=Strict, derived from the token: every node of a cluster
//! accepts it, and changing the token ends every session). Every form
//! carries a CSRF token bound to the session. Without a token the UI is
//! open, like the API, and forms still carry a CSRF token.

use axum::http::{HeaderMap, header};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "tale_ui_session";

/// The keys sessions and CSRF tokens are derived from.
pub(crate) struct UiKeys {
    /// HMAC key: a digest of the API token, or random for this process.
    key: [u8; 32],
    /// Whether the UI needs a login (an API token is configured).
    pub(crate) required: bool,
}

impl UiKeys {
    pub(crate) fn new(api_token: Option<&secrecy::SecretString>) -> Self {
        match api_token {
            Some(token) => UiKeys {
                key: Sha256::digest(format!("tale-ui:{}", token.expose_secret()).as_bytes()).into(),
                required: true,
            },
            None => UiKeys {
                key: tale_engine::runtime::sealed::random_bytes(),
                required: false,
            },
        }
    }

    fn mac(&self, what: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(what);
        hex(&mac.finalize().into_bytes())
    }

    /// The session a correct login gets.
    pub(crate) fn session(&self) -> String {
        self.mac(b"session")
    }

    /// The session the request presents, when it is valid. Without a
    /// required login every request has the open session.
    pub(crate) fn session_of(&self, headers: &HeaderMap) -> Option<String> {
        if !self.required {
            return Some(String::new());
        }
        let presented = cookie(headers, COOKIE)?;
        equal(presented.as_bytes(), self.session().as_bytes()).then(|| presented.to_owned())
    }

    /// The CSRF token of a session.
    pub(crate) fn csrf(&self, session: &str) -> String {
        self.mac(format!("csrf:{session}").as_bytes())
    }

    pub(crate) fn csrf_ok(&self, session: &str, presented: &str) -> bool {
        equal(presented.as_bytes(), self.csrf(session).as_bytes())
    }
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A cookie's value from the `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The `Set-Cookie` of a login (`Some`) or a logout (`None`).
pub(crate) fn set_cookie(session: Option<&str>) -> String {
    match session {
        Some(s) => format!("{COOKIE}={s}; Path=/ui; HttpOnly; SameSite=Strict"),
        None => format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, cookie.parse().expect("a header value"));
        h
    }

    #[test]
    fn a_session_is_the_token_s_and_nothing_else() {
        let token = secrecy::SecretString::from("s3cret".to_owned());
        let keys = UiKeys::new(Some(&token));
        let good = keys.session();
        assert_eq!(
            keys.session_of(&headers(&format!("a=b; {COOKIE}={good}"))),
            Some(good.clone())
        );
        assert_eq!(keys.session_of(&headers(&format!("{COOKIE}=00{}", &good[2..]))), None);
        assert_eq!(keys.session_of(&HeaderMap::new()), None);
        let other = UiKeys::new(Some(&secrecy::SecretString::from("other".to_owned())));
        assert_ne!(other.session(), good, "another token, another session");
        assert!(keys.csrf_ok(&good, &keys.csrf(&good)));
        assert!(!keys.csrf_ok(&good, &keys.csrf("")));
    }

    #[test]
    fn without_a_token_the_ui_is_open_but_forms_need_their_token() {
        let keys = UiKeys::new(None);
        assert_eq!(keys.session_of(&HeaderMap::new()), Some(String::new()));
        assert!(!keys.csrf_ok("", ""));
        assert!(keys.csrf_ok("", &keys.csrf("")));
    }
}
