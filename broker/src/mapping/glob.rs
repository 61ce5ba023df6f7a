//! Match patterns: an exact string, or a glob with `*` (any run of characters, including
//! none) and `?` (exactly one character). `\` escapes `*`, `?` and `\`. A pattern is
//! anchored at both ends and has no path semantics: `*` crosses `/` and `:`.
//! Characters are Unicode scalar values, so `?` matches `é` as one character.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
}

impl Token {
    fn literal(&self) -> Option<char> {
        match self {
            Self::Literal(c) => Some(*c),
            Self::AnyOne | Self::AnyRun => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// No wildcard: compared for equality (the common case, and the fast one).
    Exact(String),
    Glob(Vec<Token>),
}

/// One piece of a pattern, for writing it in another system's syntax (`tessera trust`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GlobPiece {
    /// Characters matched as they are.
    Text(String),
    /// `*`: any run of characters, including none.
    AnyRun,
    /// `?`: exactly one character.
    AnyOne,
}

/// A compiled match pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    source: String,
    kind: Kind,
}

/// Why a pattern does not compile. `offset` counts characters from the pattern's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GlobError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.offset + 1)
    }
}

impl Pattern {
    pub fn parse(source: &str) -> Result<Self, GlobError> {
        let mut tokens = Vec::new();
        let mut wild = false;
        let mut chars = source.chars().enumerate();
        while let Some((i, c)) = chars.next() {
            match c {
                '*' => {
                    wild = true;
                    // `**` means the same as `*`; one token keeps matching linear.
                    if tokens.last() != Some(&Token::AnyRun) {
                        tokens.push(Token::AnyRun);
                    }
                }
                '?' => {
                    wild = true;
                    tokens.push(Token::AnyOne);
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('*' | '?' | '\\'))) => tokens.push(Token::Literal(e)),
                    Some((_, other)) => {
                        return Err(GlobError {
                            offset: i,
                            message: format!(
                                "`\\{other}` is not an escape: only `\\*`, `\\?` and `\\\\` are"
                            ),
                        });
                    }
                    None => {
                        return Err(GlobError {
                            offset: i,
                            message: "pattern ends with a lone `\\`".to_string(),
                        });
                    }
                },
                c => tokens.push(Token::Literal(c)),
            }
        }
        let kind = if wild {
            Kind::Glob(tokens)
        } else {
            Kind::Exact(
                tokens
                    .into_iter()
                    .filter_map(|t| match t {
                        Token::Literal(c) => Some(c),
                        Token::AnyOne | Token::AnyRun => None,
                    })
                    .collect(),
            )
        };
        Ok(Self { source: source.to_string(), kind })
    }

    /// The pattern matching `text` alone, wildcard characters included.
    pub fn exactly(text: &str) -> Self {
        Self { source: text.to_string(), kind: Kind::Exact(text.to_string()) }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The one string an exact pattern (no wildcard) matches; `None` for a glob.
    pub fn exact(&self) -> Option<&str> {
        match &self.kind {
            Kind::Exact(s) => Some(s),
            Kind::Glob(_) => None,
        }
    }

    /// The literal characters before the first wildcard (all of them for an exact pattern).
    pub fn literal_prefix(&self) -> String {
        match &self.kind {
            Kind::Exact(s) => s.clone(),
            Kind::Glob(tokens) => tokens.iter().map_while(Token::literal).collect(),
        }
    }

    /// The literal characters after the last wildcard (all of them for an exact pattern).
    pub fn literal_suffix(&self) -> String {
        match &self.kind {
            Kind::Exact(s) => s.clone(),
            Kind::Glob(tokens) => {
                let mut rev: Vec<char> = tokens.iter().rev().map_while(Token::literal).collect();
                rev.reverse();
                rev.into_iter().collect()
            }
        }
    }

    /// Whether every string `other` matches is matched by `self` too. Exact for exact
    /// patterns and the common glob shapes (`*`, `prefix*`, `*suffix`); otherwise `false`
    /// when unsure, so a warning built on it is never a false alarm.
    pub fn covers(&self, other: &Pattern) -> bool {
        if let Some(text) = other.exact() {
            return self.matches(text);
        }
        let Kind::Glob(tokens) = &self.kind else {
            return false;
        };
        if self.source == other.source {
            return true;
        }
        let wildcards = tokens.iter().filter(|t| t.literal().is_none()).count();
        match (tokens.first(), tokens.last()) {
            (Some(Token::AnyRun), _) if tokens.len() == 1 => true,
            // `prefix*`: other's literal prefix must start with it.
            (_, Some(Token::AnyRun)) if wildcards == 1 => {
                other.literal_prefix().starts_with(&self.literal_prefix())
            }
            // `*suffix`: other's literal suffix must end with it.
            (Some(Token::AnyRun), _) if wildcards == 1 => {
                other.literal_suffix().ends_with(&self.literal_suffix())
            }
            _ => false,
        }
    }

    /// Whether no string can match both patterns. Exact when either is exact; for two
    /// globs, only their literal prefixes and suffixes are compared, so `false` when unsure.
    pub fn disjoint(&self, other: &Pattern) -> bool {
        match (self.exact(), other.exact()) {
            (Some(a), Some(b)) => a != b,
            (Some(a), None) => !other.matches(a),
            (None, Some(b)) => !self.matches(b),
            (None, None) => {
                let (p, q) = (self.literal_prefix(), other.literal_prefix());
                let (s, t) = (self.literal_suffix(), other.literal_suffix());
                !(p.starts_with(&q) || q.starts_with(&p)) || !(s.ends_with(&t) || t.ends_with(&s))
            }
        }
    }

    /// The pattern as pieces, adjacent characters joined into one `Text`.
    pub fn pieces(&self) -> Vec<GlobPiece> {
        let tokens = match &self.kind {
            Kind::Exact(s) => return vec![GlobPiece::Text(s.clone())],
            Kind::Glob(tokens) => tokens,
        };
        let mut out: Vec<GlobPiece> = Vec::new();
        for token in tokens {
            match (token, out.last_mut()) {
                (Token::Literal(c), Some(GlobPiece::Text(text))) => text.push(*c),
                (Token::Literal(c), _) => out.push(GlobPiece::Text(c.to_string())),
                (Token::AnyRun, _) => out.push(GlobPiece::AnyRun),
                (Token::AnyOne, _) => out.push(GlobPiece::AnyOne),
            }
        }
        out
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        match &self.kind {
            Kind::Exact(s) => s == text,
            Kind::Glob(tokens) => glob_match(tokens, text),
        }
    }
}

/// Greedy matching with backtracking to the last `*` only. A later `*` subsumes every
/// earlier one's choices, so this is complete, and it runs in O(pattern × text) time.
fn glob_match(tokens: &[Token], text: &str) -> bool {
    let mut p = 0usize;
    let mut t = 0usize;
    // After a `*`: the token index following it, and the text index it has consumed to.
    let mut resume: Option<(usize, usize)> = None;
    loop {
        let c = text.get(t..).and_then(|rest| rest.chars().next());
        match (tokens.get(p), c) {
            (Some(Token::AnyRun), _) => {
                p += 1;
                resume = Some((p, t));
                continue;
            }
            (Some(Token::AnyOne), Some(c)) => {
                p += 1;
                t += c.len_utf8();
                continue;
            }
            (Some(Token::Literal(l)), Some(c)) if *l == c => {
                p += 1;
                t += c.len_utf8();
                continue;
            }
            (None, None) => return true,
            _ => {}
        }
        // Mismatch: let the last `*` swallow one more character and retry.
        let Some((after_star, star_end)) = resume else {
            return false;
        };
        let Some(c) = text.get(star_end..).and_then(|rest| rest.chars().next()) else {
            return false;
        };
        let next = star_end + c.len_utf8();
        resume = Some((after_star, next));
        p = after_star;
        t = next;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(text)
    }

    /// Whether a pattern compiles: every `\\` escapes `*`, `?` or `\\`.
    fn valid(p: &[char]) -> bool {
        let mut i = 0;
        while let Some(c) = p.get(i) {
            if *c == '\\' {
                if !matches!(p.get(i + 1), Some('*' | '?' | '\\')) {
                    return false;
                }
                i += 1;
            }
            i += 1;
        }
        true
    }

    /// Straight from the definition, on characters, for valid patterns. Exponential, but
    /// obviously right.
    fn reference(p: &[char], t: &[char]) -> bool {
        match p {
            [] => t.is_empty(),
            ['\\', e, rest @ ..] => t.first() == Some(e) && reference(rest, &t[1..]),
            ['*', rest @ ..] => (0..=t.len()).any(|i| reference(rest, &t[i..])),
            ['?', rest @ ..] => !t.is_empty() && reference(rest, &t[1..]),
            [c, rest @ ..] => t.first() == Some(c) && reference(rest, &t[1..]),
        }
    }

    fn escape(s: &str) -> String {
        s.chars()
            .flat_map(|c| match c {
                '*' | '?' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect()
    }

    #[test]
    fn exact_patterns_compare_whole_strings() {
        assert!(m("payments", "payments"));
        assert!(!m("payments", "payments-x"));
        assert!(!m("payments", "xpayments"));
        assert!(!m("payments", ""));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn stars_match_any_run_including_empty_and_cross_slashes() {
        assert!(m("*", ""));
        assert!(m("*", "anything/at:all"));
        assert!(m("refs/heads/*", "refs/heads/"));
        assert!(m("refs/heads/*", "refs/heads/feature/x"));
        assert!(!m("refs/heads/*", "refs/tags/v1"));
        assert!(m("*-api", "payments-api"));
        assert!(m("*-api", "-api"));
        assert!(!m("*-api", "payments-api2"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "aXbYbZ"));
        assert!(m("**", "x"));
        assert!(m("*a*", "banana"));
    }

    #[test]
    fn question_mark_is_exactly_one_character() {
        assert!(m("api-??", "api-7d"));
        assert!(!m("api-??", "api-7"));
        assert!(!m("api-??", "api-7dx"));
        assert!(!m("?", ""));
        assert!(m("?*", "x"));
        assert!(!m("?*", ""));
    }

    #[test]
    fn unicode_counts_characters_not_bytes() {
        assert!(m("caf?", "café"));
        assert!(m("?", "é"));
        assert!(m("??", "日本"));
        assert!(!m("?", "日本"));
        assert!(m("*本", "日本"));
        assert!(m("🙂*", "🙂🙃"));
    }

    #[test]
    fn escapes_make_metacharacters_literal() {
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "aXb"));
        assert!(m(r"a\?", "a?"));
        assert!(!m(r"a\?", "ab"));
        assert!(m(r"a\\b", r"a\b"));
        assert!(m(r"\**", "*x"));
        assert!(!m(r"\**", "x"));
    }

    #[test]
    fn bad_escapes_are_errors() {
        let e = Pattern::parse(r"ab\").unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.message.contains("lone"));
        let e = Pattern::parse(r"a\nb").unwrap_err();
        assert_eq!(e.offset, 1);
        assert!(e.message.contains(r"\n"));
    }

    fn p(pattern: &str) -> Pattern {
        Pattern::parse(pattern).unwrap()
    }

    #[test]
    fn literal_prefixes_and_suffixes() {
        assert_eq!(p("refs/heads/*").literal_prefix(), "refs/heads/");
        assert_eq!(p("refs/heads/*").literal_suffix(), "");
        assert_eq!(p("*-api").literal_suffix(), "-api");
        assert_eq!(p("a?b*c").literal_prefix(), "a");
        assert_eq!(p("a?b*c").literal_suffix(), "c");
        assert_eq!(p(r"a\*b").literal_prefix(), "a*b");
        assert_eq!(p("exact").exact(), Some("exact"));
        assert_eq!(p("ex*").exact(), None);
    }

    #[test]
    fn coverage_of_common_shapes() {
        assert!(p("*").covers(&p("anything*")));
        assert!(p("payments-*").covers(&p("payments-batch-*")));
        assert!(p("payments-*").covers(&p("payments-api")));
        assert!(!p("payments-*").covers(&p("pay*")));
        assert!(p("*-api").covers(&p("*payments-api")));
        assert!(!p("*-api").covers(&p("*-api-*")));
        assert!(p("a").covers(&p("a")));
        assert!(!p("a").covers(&p("a*")));
        assert!(p("a?c").covers(&p("abc")));
        // Unsure shapes answer no.
        assert!(!p("a*b*").covers(&p("ab*")));
    }

    #[test]
    fn disjointness() {
        assert!(p("a").disjoint(&p("b")));
        assert!(!p("a").disjoint(&p("a")));
        assert!(p("api-*").disjoint(&p("web")));
        assert!(!p("api-*").disjoint(&p("api-1")));
        assert!(p("api-*").disjoint(&p("web-*")));
        assert!(!p("api-*").disjoint(&p("api-v*")));
        assert!(p("*-prod").disjoint(&p("*-dev")));
        assert!(!p("*").disjoint(&p("x*")));
    }

    proptest! {
        #[test]
        fn covers_and_disjoint_never_lie(
            a in proptest::collection::vec(prop::sample::select(vec!['a', 'b', '*', '?']), 0..5),
            b in proptest::collection::vec(prop::sample::select(vec!['a', 'b', '*', '?']), 0..5),
            t in proptest::collection::vec(prop::sample::select(vec!['a', 'b']), 0..6),
        ) {
            let (a, b): (String, String) = (a.iter().collect(), b.iter().collect());
            let text: String = t.iter().collect();
            let (pa, pb) = (p(&a), p(&b));
            if pa.covers(&pb) && pb.matches(&text) {
                prop_assert!(pa.matches(&text), "{a} covers {b} but not {text}");
            }
            if pa.disjoint(&pb) {
                prop_assert!(!(pa.matches(&text) && pb.matches(&text)), "{a} and {b} both match {text}");
            }
        }

        #[test]
        fn agrees_with_the_reference(
            p in proptest::collection::vec(prop::sample::select(vec!['a', 'b', 'é', '*', '?', '\\']), 0..8),
            t in proptest::collection::vec(prop::sample::select(vec!['a', 'b', 'é', '*', '?', '\\']), 0..10),
        ) {
            let pattern: String = p.iter().collect();
            let text: String = t.iter().collect();
            match Pattern::parse(&pattern) {
                Ok(compiled) => {
                    prop_assert!(valid(&p));
                    prop_assert_eq!(compiled.matches(&text), reference(&p, &t));
                }
                Err(_) => prop_assert!(!valid(&p)),
            }
        }

        #[test]
        fn an_escaped_string_matches_only_itself(s in "\\PC{0,12}", other in "\\PC{0,12}") {
            let pattern = Pattern::parse(&escape(&s)).unwrap();
            prop_assert!(pattern.matches(&s));
            prop_assert_eq!(pattern.matches(&other), s == other);
        }

        #[test]
        fn star_prefix_and_suffix(prefix in "[a-z/]{0,6}", rest in "\\PC{0,8}") {
            let pattern = Pattern::parse(&format!("{}*", escape(&prefix))).unwrap();
            let text = format!("{prefix}{rest}");
            prop_assert!(pattern.matches(&text));
            let pattern = Pattern::parse(&format!("*{}", escape(&prefix))).unwrap();
            let text = format!("{rest}{prefix}");
            prop_assert!(pattern.matches(&text));
        }
    }
}
