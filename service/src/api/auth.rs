//! API tokens (`api.auth`): who may call which route.
//!
//! Contract:
//! - Tokens come from `api.auth.tokens_file`, a YAML list of `{name, scopes, token | sha256,
//!   rate_limit?}` (a mounted Kubernetes Secret in a cluster). Only the SHA-256 of each token is kept; a
//!   plain `token` is hashed on load and dropped.
//! - The file is read again every `api.auth.reload_interval_ms` and swapped in whole when its
//!   content changed and parses (the `reload` module's loop); a file that does not parse, or is
//!   gone, keeps the previous tokens, is logged and counted once
//!   (`highpress_auth_reloads_total{result="failed"}`).
//! - A request to a guarded route must carry `Authorization: Bearer <token>`. The token's hash
//!   is compared with every known hash in constant time; no match is 401 `unauthorized`
//!   (`WWW-Authenticate: Bearer`), a match without the route's [`Scope`] is 403 `forbidden`,
//!   and either way the handler does not run, so nothing is written.
//! - The caller's name (never the token) goes to the request span (`enduser.id`), the request
//!   log, `highpress_auth_requests_total{token,result}`, and, through [`CALLER`], to the
//!   counters the gateway calls for the request.
//!
//! With auth off, [`Auth::check`] allows everything and costs one branch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use prometheus::IntCounter;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use super::error::{ApiError, ErrorCode};
use super::rate_limit::{Bucket, Rate};
use crate::config::AuthConfig;
use crate::metrics::METRICS;
use crate::reload::{Outcome, Reloading};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read counters and leaderboards.
    Read,
    /// Increment counters (single and batch).
    Write,
    /// Reset a counter to 0.
    Reset,
    /// Profiles (`/debug/pprof/*`) and any future admin route.
    Admin,
    /// `/metrics`, when `api.auth.protect_metrics` is on.
    Metrics,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Reset => "reset",
            Self::Admin => "admin",
            Self::Metrics => "metrics",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

tokio::task_local! {
    /// The authenticated caller of the request being handled, for calls made on its behalf
    /// (the gateway forwards it to the counters).
    pub static CALLER: Arc<str>;
}

/// The caller of the request this task is handling, if auth named one.
pub fn current_caller() -> Option<Arc<str>> {
    CALLER.try_with(Arc::clone).ok()
}

/// One line of the tokens file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenLine {
    name: String,
    scopes: Vec<Scope>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    /// This token's own rate limit, instead of `api.rate_limit`'s.
    #[serde(default)]
    rate_limit: Option<TokenRate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRate {
    requests_per_second: f64,
    burst: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenLine>,
}

/// One known token: its name, hash, scopes, rate-limit bucket and metric handles.
pub struct Token {
    name: Arc<str>,
    hash: [u8; 32],
    scopes: u8,
    /// Its own rate, if the file gives one.
    rate: Option<Rate>,
    /// Kept across reloads of the file, by name.
    bucket: Arc<Bucket>,
    allowed: IntCounter,
    forbidden: IntCounter,
}

impl Token {
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Its own rate, if the tokens file gives one.
    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }

    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }
}

/// Every known token.
#[derive(Default)]
pub struct Tokens(Vec<Arc<Token>>);

/// Shortest plain token accepted: 16 bytes, so guessing one is out of reach.
pub const MIN_TOKEN_BYTES: usize = 16;

impl Tokens {
    /// Parses the tokens file's text. Names must be unique, `[A-Za-z0-9_.-]{1,64}` (they are
    /// metric labels), each line needs scopes and exactly one of `token` and `sha256`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: TokenFile = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        let mut tokens: Vec<Arc<Token>> = Vec::with_capacity(file.tokens.len());
        for (i, line) in file.tokens.into_iter().enumerate() {
            let at = format!("tokens[{i}]");
            let valid_name = !line.name.is_empty()
                && line.name.len() <= 64
                && line
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !valid_name {
                return Err(format!("{at}.name must match [A-Za-z0-9_.-]{{1,64}}"));
            }
            if tokens.iter().any(|t| *t.name == *line.name) {
                return Err(format!("{at}.name {:?} is used twice", line.name));
            }
            if line.scopes.is_empty() {
                return Err(format!("{at}.scopes must name at least one scope"));
            }
            let hash = match (&line.token, &line.sha256) {
                (Some(token), None) if token.len() >= MIN_TOKEN_BYTES => hash(token.as_bytes()),
                (Some(_), None) => {
                    return Err(format!(
                        "{at}.token must be at least {MIN_TOKEN_BYTES} bytes"
                    ));
                }
                (None, Some(hex)) => parse_sha256(hex)
                    .ok_or_else(|| format!("{at}.sha256 must be 64 hexadecimal digits"))?,
                _ => return Err(format!("{at} needs exactly one of token and sha256")),
            };
            let rate = match line.rate_limit {
                None => None,
                Some(r)
                    if r.requests_per_second.is_finite()
                        && r.requests_per_second > 0.0
                        && r.burst > 0 =>
                {
                    Some(Rate::new(r.requests_per_second, r.burst))
                }
                Some(_) => {
                    return Err(format!(
                        "{at}.rate_limit needs requests_per_second above 0 and burst at least 1"
                    ));
                }
            };
            let name: Arc<str> = Arc::from(line.name.as_str());
            tokens.push(Arc::new(Token {
                hash,
                scopes: line.scopes.iter().fold(0, |bits, s| bits | s.bit()),
                rate,
                bucket: Arc::default(),
                allowed: METRICS.auth_requests.with_label_values(&[&name, "allowed"]),
                forbidden: METRICS
                    .auth_requests
                    .with_label_values(&[&name, "forbidden"]),
                name,
            }));
        }
        Ok(Self(tokens))
    }

    /// These tokens with the rate-limit buckets of `previous`'s tokens of the same names, so a
    /// reload neither refills nor empties anyone's bucket.
    fn keeping_buckets_of(mut self, previous: &Tokens) -> Self {
        for token in &mut self.0 {
            if let Some(old) = previous.0.iter().find(|old| old.name == token.name)
                && let Some(token) = Arc::get_mut(token)
            {
                token.bucket = old.bucket.clone();
            }
        }
        self
    }

    /// Names of the known tokens, in file order.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|t| &*t.name).collect()
    }

    /// The token whose hash is `presented`'s, comparing with every one in constant time.
    fn find(&self, presented: &[u8]) -> Option<&Arc<Token>> {
        let presented = hash(presented);
        let mut found = None;
        for token in &self.0 {
            if bool::from(token.hash.ct_eq(&presented)) {
                found = Some(token);
            }
        }
        found
    }
}

fn hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// The API's token check: off, or the current tokens.
#[derive(Clone, Default)]
pub struct Auth(Option<Arc<Inner>>);

struct Inner {
    tokens: Arc<Reloading<Tokens>>,
    protect_metrics: bool,
}

impl Auth {
    /// Auth off: every route is open.
    pub fn off() -> Self {
        Self(None)
    }

    /// Auth as `config` says; reads the tokens file once when it is on.
    pub fn from_config(config: &AuthConfig) -> Result<Self, String> {
        if !config.enabled {
            return Ok(Self::off());
        }
        let file = PathBuf::from(&config.tokens_file);
        let tokens = Reloading::new(
            "API tokens",
            vec![file.clone()],
            config.reload_interval,
            move |previous: Option<&Tokens>| {
                let tokens = load(&file)?;
                // A reload neither refills nor empties a remaining token's bucket.
                Ok(match previous {
                    Some(previous) => tokens.keeping_buckets_of(previous),
                    None => tokens,
                })
            },
            |outcome| {
                if let Outcome::Loaded(tokens) = &outcome {
                    tracing::info!(tokens = ?tokens.names(), "the API tokens now known");
                }
                METRICS
                    .auth_reloads
                    .with_label_values(&[outcome.result()])
                    .inc();
            },
        )?;
        Ok(Self(Some(Arc::new(Inner {
            tokens,
            protect_metrics: config.protect_metrics,
        }))))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The scope `/metrics` needs: `metrics` when `api.auth.protect_metrics`, else none.
    pub fn metrics_scope(&self) -> Option<Scope> {
        self.0
            .as_ref()
            .is_some_and(|inner| inner.protect_metrics)
            .then_some(Scope::Metrics)
    }

    /// Whether `headers` may call a route that needs `scope`: the caller's token when auth is
    /// on, `None` when it is off, or the 401/403 answer.
    pub fn check(&self, headers: &HeaderMap, scope: Scope) -> Result<Option<Arc<Token>>, ApiError> {
        let Some(inner) = &self.0 else {
            return Ok(None);
        };
        let Some(presented) = bearer(headers) else {
            METRICS.auth_rejected_missing.inc();
            return Err(unauthorized(
                "an Authorization: Bearer <token> header is required",
            ));
        };
        let tokens = inner.tokens.load();
        let Some(token) = tokens.find(presented) else {
            METRICS.auth_rejected_unknown.inc();
            return Err(unauthorized("the bearer token is not known"));
        };
        if token.scopes & scope.bit() == 0 {
            token.forbidden.inc();
            return Err(ApiError {
                code: ErrorCode::Forbidden,
                message: format!(
                    "token {:?} lacks the {:?} scope this route needs",
                    &*token.name,
                    scope.as_str()
                ),
                field: Some("Authorization".into()),
            });
        }
        token.allowed.inc();
        Ok(Some(token.clone()))
    }

    /// Reads the tokens file every `reload_interval` until `stop`, swapping in a changed file
    /// that parses. Returns at once when auth is off.
    pub async fn watch(self, stop: CancellationToken) {
        let Some(inner) = self.0 else { return };
        inner.tokens.clone().watch(stop).await;
    }
}

fn load(file: &Path) -> Result<Tokens, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("api.auth.tokens_file {}: {e}", file.display()))?;
    Tokens::parse(&text).map_err(|e| format!("api.auth.tokens_file {}: {e}", file.display()))
}

/// The token of `Authorization: Bearer <token>` (the scheme case-insensitive, RFC 6750).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

fn unauthorized(message: &str) -> ApiError {
    ApiError {
        code: ErrorCode::Unauthorized,
        message: message.into(),
        field: Some("Authorization".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).expect("a header value"),
        );
        headers
    }

    #[test]
    fn a_plain_token_and_a_hash_find_the_same_entry_and_nothing_else_matches() {
        let sha = format!("{:x}", Sha256::digest(b"reader-token-0123456789"));
        let tokens = Tokens::parse(&format!(
            "tokens:\n- name: writer\n  token: writer-token-0123456789\n  scopes: [write]\n\
             - name: reader\n  sha256: {sha}\n  scopes: [read]\n"
        ))
        .expect("a valid file");
        assert_eq!(tokens.names(), ["writer", "reader"]);
        let found = |t: &[u8]| tokens.find(t).map(|t| t.name.to_string());
        assert_eq!(found(b"writer-token-0123456789").as_deref(), Some("writer"));
        assert_eq!(found(b"reader-token-0123456789").as_deref(), Some("reader"));
        assert_eq!(found(b"reader-token-012345678"), None);
        assert_eq!(found(b""), None);
    }

    #[test]
    fn bad_files_are_refused_with_the_line_at_fault() {
        for (text, error) in [
            (
                "tokens:\n- name: a\n  scopes: [read]\n",
                "tokens[0] needs exactly one",
            ),
            (
                "tokens:\n- name: a\n  token: short\n  scopes: [read]\n",
                "tokens[0].token must be at least 16",
            ),
            (
                "tokens:\n- name: a b\n  token: 0123456789abcdef\n  scopes: [read]\n",
                "tokens[0].name",
            ),
            (
                "tokens:\n- name: a\n  token: 0123456789abcdef\n  scopes: []\n",
                "tokens[0].scopes",
            ),
            (
                "tokens:\n- name: a\n  sha256: abc\n  scopes: [read]\n",
                "tokens[0].sha256",
            ),
            (
                "tokens:\n- name: a\n  token: 0123456789abcdef\n  scopes: [read]\n- name: a\n  token: 0123456789abcdeg\n  scopes: [read]\n",
                "tokens[1].name \"a\" is used twice",
            ),
            (
                "tokens:\n- name: a\n  token: 0123456789abcdef\n  scopes: [root]\n",
                "unknown variant",
            ),
        ] {
            let got = Tokens::parse(text).err().unwrap_or_default();
            assert!(got.contains(error), "{text:?}: {got}");
        }
    }

    #[test]
    fn a_reload_keeps_each_remaining_tokens_rate_limit_bucket() {
        let text = "tokens:\n- {name: a, token: a-token-0123456789, scopes: [read], \
                    rate_limit: {requests_per_second: 2, burst: 3}}\n\
                    - {name: b, token: b-token-0123456789, scopes: [read]}\n";
        let before = Tokens::parse(text).expect("valid");
        let after = Tokens::parse(text)
            .expect("valid")
            .keeping_buckets_of(&before);
        for (old, new) in before.0.iter().zip(&after.0) {
            assert!(Arc::ptr_eq(&old.bucket, &new.bucket), "{}", old.name);
        }
        assert_eq!(after.0[0].rate(), Some(Rate::new(2.0, 3)));
        assert_eq!(after.0[1].rate(), None);
        let renamed = Tokens::parse(&text.replace("name: a", "name: c"))
            .expect("valid")
            .keeping_buckets_of(&before);
        assert!(!Arc::ptr_eq(&before.0[0].bucket, &renamed.0[0].bucket));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_must_carry_a_token() {
        assert_eq!(bearer(&headers("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&headers("bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&headers("Basic abc")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
