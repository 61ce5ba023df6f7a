use super::*;

fn subject(pieces: &[GlobPiece]) -> Subject {
    Subject::default().pushed(pieces)
}

fn text(t: &str) -> GlobPiece {
    GlobPiece::Text(t.to_owned())
}

#[test]
fn subjects_are_written_in_each_platforms_pattern_syntax() {
    let s = subject(&[text("k8s://c/ns/a.b/sa/"), GlobPiece::AnyRun, text("-x"), GlobPiece::AnyOne]);
    assert_eq!(s.exact(), None);
    assert_eq!(s.aws_like(), "k8s://c/ns/a.b/sa/*-x?");
    assert_eq!(s.regex(), r"^k8s://c/ns/a\.b/sa/.*-x.$");
    assert_eq!(s.to_string(), "k8s://c/ns/a.b/sa/*-x?");

    // Wildcard characters that are part of the id stay literal everywhere.
    let odd = subject(&[text("oidc://s/a*b?c$d\\")]);
    assert_eq!(odd.exact().as_deref(), Some("oidc://s/a*b?c$d\\"));
    assert_eq!(odd.aws_like(), "oidc://s/a${*}b${?}c${$}d\\");
    assert_eq!(odd.regex(), r"^oidc://s/a\*b\?c\$d\\$");
    assert_eq!(odd.to_string(), r"oidc://s/a\*b\?c$d\\");
}

#[test]
fn pieces_join_and_runs_collapse() {
    let s = subject(&[text("a"), text("b"), GlobPiece::AnyRun, GlobPiece::AnyRun, text("")]);
    assert_eq!(s.0, vec![text("ab"), GlobPiece::AnyRun]);
    assert!(subject(&[GlobPiece::AnyRun, GlobPiece::AnyRun]).is_any());
    assert!(!s.is_any());
}

#[test]
fn shell_words_are_quoted_only_when_needed() {
    assert_eq!(sh("--member=principal://x/y@z"), "--member=principal://x/y@z");
    assert_eq!(sh("a b"), "'a b'");
    assert_eq!(sh("it's"), r"'it'\''s'");
    assert_eq!(sh(""), "''");
}
