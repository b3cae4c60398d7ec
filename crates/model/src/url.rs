//! Credentials out of repository URLs, for everything Plumbline prints:
//! logs, errors, `/readyz`, metric labels and queue partition names all
//! show a repository through [`redact`], and git's own messages, which may
//! echo the URL, through [`redact_text`].
//!
//! A URL with a scheme is read by the `url` crate (WHATWG parsing, the
//! same rules as browsers and git's own URL normaliser), so a `/`, `@` or
//! `%40` in a password cannot move where the credentials end. Every part
//! of the user information is hidden, the user name too: a token is often
//! given as the user name (`https://ghp_…@github.com/…`), and nothing tells
//! a token from a name. A query or fragment is hidden as well (some hosts
//! take `?access_token=`). Forms the parser does not take (git's scp-like
//! `user@host:path`, local paths, anything malformed) are redacted
//! conservatively: whatever comes before the last `@` of the part that
//! could hold credentials is hidden, since a host name never holds an `@`.

use std::borrow::Cow;
use std::fmt;

/// A repository URL as configured (any URL git takes, or a local path).
/// `Display` and `Debug` hide its credentials, so that a partition or a
/// destination printed anywhere never shows a token; only [`RepoUrl::as_str`]
/// gives the URL itself, for git.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RepoUrl(String);

impl RepoUrl {
    /// `url`, as configured.
    pub fn new(url: impl Into<String>) -> RepoUrl {
        RepoUrl(url.into())
    }

    /// The URL with its credentials: for git, and for nothing printed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for RepoUrl {
    fn from(url: String) -> RepoUrl {
        RepoUrl(url)
    }
}

impl From<&str> for RepoUrl {
    fn from(url: &str) -> RepoUrl {
        RepoUrl(url.to_owned())
    }
}

/// The URL with every credential hidden ([`redact`]).
impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RepoUrl").field(&redact(&self.0)).finish()
    }
}

/// What stands in for hidden credentials.
pub const HIDDEN: &str = "***";

/// `url` with every credential it might carry hidden.
pub fn redact(url: &str) -> String {
    redacted(url).0
}

/// `text` (git's output about `url`) with `url`, every other URL in it, and
/// every credential of `url` (as written and percent-decoded) hidden.
pub fn redact_text(text: &str, url: &str) -> String {
    let (shown, secrets) = redacted(url);
    let mut text = text.replace(url, &shown);
    text = redact_urls_in(&text);
    // Short strings are left alone: hiding every `ab` in a message would
    // leave nothing readable, and a credential that short is not one git
    // prints outside the URL (which is redacted above).
    for secret in secrets.iter().filter(|s| s.chars().count() >= 4) {
        text = text.replace(secret.as_str(), HIDDEN);
    }
    text
}

/// The redacted form of `url`, and the credentials that were hidden (for
/// hiding them in free text as well).
fn redacted(url: &str) -> (String, Vec<String>) {
    let mut secrets = Vec::new();
    let shown = if let Some(at) = url.find("://") {
        with_scheme(url, at, &mut secrets)
    } else if is_scp_like(url) {
        // `[user@]host:path`: the user is before the last `@` ahead of the
        // last `:` (a path may hold either, which then hides more).
        let colon = url.rfind(':').unwrap_or(url.len());
        let (head, tail) = url.split_at(colon);
        format!("{}{tail}", hide_before_last_at(head, &mut secrets))
    } else {
        // A local path: git reads it as a file name, so nothing in it is
        // sent as a credential, but `token@host/repo` without a scheme is
        // a mistake that would print a token: hide such a segment's part
        // before its `@`.
        url.split_inclusive(['/', '\\'])
            .map(|segment| hide_before_last_at(segment, &mut secrets))
            .collect()
    };
    let mut all = Vec::new();
    for secret in secrets {
        let decoded = percent_encoding::percent_decode_str(&secret)
            .decode_utf8_lossy()
            .into_owned();
        // `user:password` as written, and each of its parts.
        for candidate in [secret.clone(), decoded] {
            if let Some((user, password)) = candidate.split_once(':') {
                all.push(user.to_owned());
                all.push(password.to_owned());
            }
            all.push(candidate);
        }
    }
    all.retain(|s| !s.is_empty() && s != HIDDEN);
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    all.dedup();
    (shown, all)
}

fn with_scheme(url: &str, separator: usize, secrets: &mut Vec<String>) -> String {
    let scheme = &url[..separator];
    let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !valid_scheme {
        return hide_before_last_at(url, secrets).into_owned();
    }
    if let Ok(mut parsed) = url::Url::parse(url) {
        let mut hidden = true;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            secrets.push(parsed.username().to_owned());
            secrets.extend(parsed.password().map(str::to_owned));
            hidden = parsed.set_password(None).is_ok() && parsed.set_username(HIDDEN).is_ok();
        }
        if let Some(query) = parsed.query() {
            secrets.push(query.to_owned());
            parsed.set_query(Some(HIDDEN));
        }
        if let Some(fragment) = parsed.fragment() {
            secrets.push(fragment.to_owned());
            parsed.set_fragment(Some(HIDDEN));
        }
        if hidden {
            return parsed.to_string();
        }
    }
    // Not a URL the parser takes (a `/` in a password ends the authority
    // early, a space, a bad port): hide everything before the last `@`,
    // and any query.
    let rest = &url[separator + 3..];
    let rest = match rest.split_once(['?', '#']) {
        Some((before, after)) => {
            secrets.push(after.to_owned());
            Cow::Owned(format!("{before}?{HIDDEN}"))
        }
        None => Cow::Borrowed(rest),
    };
    format!("{scheme}://{}", hide_before_last_at(&rest, secrets))
}

/// Git's rule for the scp-like syntax: a `:` with no `/` before it, and not
/// a drive letter (`C:\…`).
fn is_scp_like(url: &str) -> bool {
    let Some(colon) = url.find(':') else {
        return false;
    };
    let drive = colon == 1 && url.starts_with(|c: char| c.is_ascii_alphabetic());
    !url[..colon].contains(['/', '\\']) && !drive
}

/// `***@rest` for `anything@rest` (split at the last `@`), else `s`.
fn hide_before_last_at<'a>(s: &'a str, secrets: &mut Vec<String>) -> Cow<'a, str> {
    match s.rsplit_once('@') {
        Some((before, after)) => {
            secrets.push(before.to_owned());
            Cow::Owned(format!("{HIDDEN}@{after}"))
        }
        None => Cow::Borrowed(s),
    }
}

/// Every `scheme://…` in `text`, up to the next blank or quote, redacted.
fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    for (start, end) in url_spans(text) {
        let at = text.len() - rest.len();
        out.push_str(&text[at..start]);
        out.push_str(&redact(&text[start..end]));
        rest = &text[end..];
    }
    out.push_str(rest);
    out
}

/// Where the URLs with a scheme (`scheme://…`) are in `text`, in order.
fn url_spans(text: &str) -> Vec<(usize, usize)> {
    let ends = |c: char| c.is_whitespace() || "'\"`<>".contains(c);
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let at = from + found;
        // After the last character that cannot be in a scheme (which
        // may be wider than a byte: a quote cut short starts with `…`).
        let start = text[from..at]
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .map_or(from, |(i, c)| from + i + c.len_utf8());
        if start == at {
            // No scheme before `://`: not a URL; go on after it.
            from = at + 3;
            continue;
        }
        let end = text[at..].find(ends).map_or(text.len(), |i| at + i);
        spans.push((start, end));
        from = end;
    }
    spans
}

/// What names one repository however `url` spells it: without the
/// credentials, and without a trailing `/` or `.git` (forges serve
/// `…/repo`, `…/repo/` and `…/repo.git` as one).
pub fn repository_key(url: &str) -> String {
    let without_user = match url.find("://") {
        Some(at) => {
            let authority_end = url[at + 3..].find('/').map_or(url.len(), |i| at + 3 + i);
            match url[at + 3..authority_end].rfind('@') {
                Some(i) => format!("{}{}", &url[..at + 3], &url[at + 3 + i + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    let trimmed = without_user.trim_end_matches('/');
    trimmed.strip_suffix(".git").unwrap_or(trimmed).to_owned()
}

/// `message`, which may quote parts of `source` (a parser's error shows the
/// line it stopped at), with every URL in it hidden as [`redact`] does, and
/// every credential of every URL in `source` hidden too, wherever a quote
/// cut it: a word of `message` that holds four characters in a row of a
/// credential is hidden up to its last `@` (or whole, without one).
pub fn redact_quoting(message: &str, source: &str) -> String {
    let secrets: Vec<Vec<char>> = source
        .split(|c: char| c.is_whitespace() || "'\"`,{}[]".contains(c))
        .filter(|word| word.contains('@'))
        .flat_map(|word| redacted(word).1)
        .map(|secret| secret.chars().collect::<Vec<char>>())
        .filter(|secret| secret.len() >= 4)
        .collect();
    let quotes_a_secret = |word: &str| {
        secrets.iter().any(|secret| {
            secret
                .windows(4)
                .any(|run| word.contains(&run.iter().collect::<String>()))
        })
    };
    let mut out = String::with_capacity(message.len());
    for word in redact_urls_in(message).split_inclusive(char::is_whitespace) {
        let (text, blank) = word.split_at(word.trim_end().len());
        if quotes_a_secret(text) {
            match text.rfind('@') {
                Some(at) => {
                    out.push_str(HIDDEN);
                    out.push_str(&text[at..]);
                }
                None => out.push_str(HIDDEN),
            }
        } else {
            out.push_str(text);
        }
        out.push_str(blank);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_repository_has_one_key_however_spelled() {
        let key = repository_key("https://h/org/r");
        for spelled in [
            "https://bot:tok@h/org/r.git",
            "https://h/org/r/",
            "https://tok@h/org/r.git/",
        ] {
            assert_eq!(repository_key(spelled), key, "{spelled}");
        }
        assert_ne!(repository_key("https://h/org/r2"), key);
        assert_eq!(repository_key("/srv/git/r.git"), "/srv/git/r");
    }

    #[test]
    fn a_quote_that_cuts_a_url_short_still_hides_its_credentials() {
        let source = "spec: {repoUrl: 'https://user:s3cr3tPW@127.0.0.1:9/x.git'}}";
        // As a YAML parser quotes the line it stopped at: cut at its start.
        let message = "22 | …r:s3cr3tPW@127.0.0.1:9/x.git'}}\n   ^ misplaced bracket";
        let shown = redact_quoting(message, source);
        assert!(!shown.contains("s3cr3tPW"), "{shown}");
        assert!(shown.contains("misplaced bracket"), "{shown}");
        // Cut inside the password, at either end.
        for cut in ["…3cr3tPW@127.0.0.1:9/x.git", "'https://user:s3cr3t…"] {
            let shown = redact_quoting(cut, source);
            assert!(!shown.contains("3cr3t"), "{cut}: {shown}");
        }
        assert_eq!(
            redact_quoting("…3cr3tPW@127.0.0.1:9/x.git'}}", source),
            "***@127.0.0.1:9/x.git'}}"
        );
        // scp-like URLs carry a token as their user.
        let scp = "repoUrl: 'ghp_0123456789abcdef@github.com:org/r.git'";
        let shown = redact_quoting("2 | …_0123456789abcdef@github.com:org/r.git'", scp);
        assert!(!shown.contains("0123456789"), "{shown}");
        // A character wider than a byte right before the scheme.
        let cut = redact_quoting("…https://user:s3cr3tPW@h/x.git", source);
        assert_eq!(cut, "…https://***@h/x.git");
        let whole = redact_quoting(source, source);
        assert!(
            !whole.contains("s3cr3tPW") && whole.contains("127.0.0.1:9/x.git"),
            "{whole}"
        );
    }

    /// Every way a credential can be written into a repository URL, and a
    /// secret that must not survive in the redacted form.
    #[test]
    fn a_token_as_user_or_in_any_userinfo_form_is_never_shown() {
        let table: &[(&str, &str, &[&str])] = &[
            // (url, shown, secrets that must be gone)
            (
                "https://ghp_abcdefghij0123456789@github.com/org/repo.git",
                "https://***@github.com/org/repo.git",
                &["ghp_abcdefghij0123456789"],
            ),
            (
                "https://bot:s3cr3t@git.example.com/r.git",
                "https://***@git.example.com/r.git",
                &["s3cr3t", "bot"],
            ),
            (
                "https://bot:pa%2Fss%40word@git.example.com/r.git",
                "https://***@git.example.com/r.git",
                &["pa%2Fss%40word", "pa/ss@word"],
            ),
            // An `@` in the password, not encoded: the last `@` ends it.
            (
                "https://bot:p@ss@git.example.com/r.git",
                "https://***@git.example.com/r.git",
                &["p@ss", "p%40ss"],
            ),
            // A `/` in the password, not encoded: the parser refuses it.
            (
                "https://bot:pa/ss@git.example.com/r.git",
                "https://***@git.example.com/r.git",
                &["pa/ss"],
            ),
            (
                "http://oauth2:glpat-XYZ123456@127.0.0.1:8080/r.git",
                "http://***@127.0.0.1:8080/r.git",
                &["glpat-XYZ123456"],
            ),
            (
                "ssh://git:hunter22@host.example/srv/r.git",
                "ssh://***@host.example/srv/r.git",
                &["hunter22"],
            ),
            (
                "ssh://deploy-token-0123@host.example:2222/r.git",
                "ssh://***@host.example:2222/r.git",
                &["deploy-token-0123"],
            ),
            (
                "https://git.example.com/r.git?access_token=tok12345",
                "https://git.example.com/r.git?***",
                &["tok12345"],
            ),
            // scp-like, with a token as the user, and with a password.
            (
                "ghp_scp0123456789@github.com:org/repo.git",
                "***@github.com:org/repo.git",
                &["ghp_scp0123456789"],
            ),
            (
                "user:pw/x@y@host:org/repo.git",
                "***@host:org/repo.git",
                &["user:pw", "pw/x@y"],
            ),
            // No scheme, no colon: git takes it as a path, a mistake that
            // must not print the token either.
            (
                "ghp_nocolon12345@github.com/org/repo.git",
                "***@github.com/org/repo.git",
                &["ghp_nocolon12345"],
            ),
            // Garbage.
            ("https://to ken@host/r", "https://***@host/r", &["to ken"]),
            ("htt ps://tok3n@host", "***@host", &["tok3n"]),
            ("https://secr3t@[::1", "https://***@[::1", &["secr3t"]),
            ("@@@", "***@", &[]),
            ("", "", &[]),
        ];
        for (url, shown, secrets) in table {
            let redacted = redact(url);
            assert_eq!(&redacted, shown, "{url}");
            for secret in *secrets {
                assert!(!redacted.contains(secret), "{url} → {redacted}");
            }
        }
        // What carries no credentials is shown as it is.
        for plain in [
            "https://git.example.com/r.git",
            "git://127.0.0.1:9418/repo.git",
            "file:///srv/git/r.git",
            "/srv/git/r.git",
            "relative/r.git",
            "C:\\repos\\r.git",
            "host.example:org/r.git",
        ] {
            assert_eq!(redact(plain), plain);
        }
    }

    #[test]
    fn git_messages_lose_the_url_s_credentials_however_git_echoes_them() {
        let url = "https://bot:pa%2Fss%40word@git.example.com/r.git";
        let stderr = format!(
            "fatal: unable to access '{url}/': Could not resolve host\n\
             remote: Invalid username or password (pa/ss@word)\n\
             fatal: Authentication failed for 'https://bot:pa%2Fss%40word@git.example.com/r.git/'\n\
             also ssh://other:tok9876@mirror.example/x"
        );
        let text = redact_text(&stderr, url);
        for secret in ["pa%2Fss%40word", "pa/ss@word", "tok9876", "bot:"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(
            text.contains("'https://***@git.example.com/r.git/'"),
            "{text}"
        );
        assert!(text.contains("ssh://***@mirror.example/x"), "{text}");
        // Text without URLs is untouched.
        assert_eq!(
            redact_text("error: failed to push", "/srv/r.git"),
            "error: failed to push"
        );
    }

    #[test]
    fn a_repo_url_shows_no_credentials_in_display_or_debug() {
        let url = RepoUrl::from("https://bot:ghp_s3cret@example.com/org/repo.git");
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(
                !shown.contains("s3cret") && !shown.contains("bot"),
                "{shown}"
            );
            assert!(shown.contains("example.com/org/repo.git"), "{shown}");
        }
        assert!(
            url.as_str().contains("ghp_s3cret"),
            "git gets the URL whole"
        );
    }
}
