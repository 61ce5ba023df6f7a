//! Templates in grant values: `{field}` is replaced by the identity's value of `field` (one
//! of [`FIELDS`](tessera_adapters::identity::FIELDS) or `attributes.<key>`); `{{` and `}}`
//! are literal braces. Field names are checked when the file loads; a field with no value
//! for a given identity makes the rule unrenderable for that identity, never an empty string.

use std::fmt;

use tessera_adapters::Identity;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(String),
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

/// Why a template does not compile. `offset` counts characters from the template's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.offset + 1)
    }
}

/// The identity has no value for this field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MissingField(pub String);

impl Template {
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = source.chars().enumerate().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|(_, n)| *n == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|(_, n)| *n == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(TemplateError {
                        offset: i,
                        message: "`}` without a matching `{`".to_string(),
                    });
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (j, n) in chars.by_ref() {
                        match n {
                            '}' => {
                                closed = true;
                                break;
                            }
                            '{' => {
                                return Err(TemplateError {
                                    offset: j,
                                    message: "`{` inside a `{field}` reference".to_string(),
                                });
                            }
                            n => name.push(n),
                        }
                    }
                    if !closed {
                        return Err(TemplateError { offset: i, message: "`{` is never closed".to_string() });
                    }
                    if name.is_empty() {
                        return Err(TemplateError {
                            offset: i,
                            message: "empty `{}` names no field".to_string(),
                        });
                    }
                    let actor_field = name.strip_prefix("actor.").is_some_and(Identity::is_field);
                    if !Identity::is_field(&name) && !actor_field {
                        return Err(TemplateError {
                            offset: i,
                            message: format!("unknown identity field `{name}`"),
                        });
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(name));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// The template as literal text and field names, for `tessera trust`.
    pub fn pieces(&self) -> Vec<crate::mapping::TemplatePiece> {
        use crate::mapping::TemplatePiece;
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => TemplatePiece::Text(s.clone()),
                Part::Field(f) => TemplatePiece::Field(f.clone()),
            })
            .collect()
    }

    /// The template's text when it references no field: the same for every identity.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Render for `identity`, or name the first field it has no value for.
    #[cfg(test)]
    pub fn render(&self, identity: &Identity) -> Result<String, MissingField> {
        self.render_with(identity, None)
    }

    /// Render for `identity` and the request's `actor` (`{actor.name}` names the actor's
    /// fields; without an actor they have no value), or name the first field with none.
    pub fn render_with(&self, identity: &Identity, actor: Option<&Identity>) -> Result<String, MissingField> {
        let mut out = String::new();
        for part in &self.parts {
            let value = |f: &str| match f.strip_prefix("actor.") {
                Some(field) => actor.and_then(|a| a.field(field)),
                None => identity.field(f),
            };
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field(f) => match value(f) {
                    Some(v) => out.push_str(v),
                    None => return Err(MissingField(f.clone())),
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::mapping::testkit::eks_api as identity;

    fn render(t: &str) -> Result<String, MissingField> {
        Template::parse(t).unwrap().render(&identity())
    }

    #[test]
    fn fields_and_attributes_render() {
        assert_eq!(render("{namespace}-{name}").unwrap(), "payments-api");
        assert_eq!(render("pod={attributes.k8s.pod_name}").unwrap(), "pod=api-7d");
        assert_eq!(render("plain").unwrap(), "plain");
        assert_eq!(render("").unwrap(), "");
        assert_eq!(render("{id}").unwrap(), "k8s://eks-prod/ns/payments/sa/api");
    }

    #[test]
    fn actor_fields_render_from_the_actor_and_are_missing_without_one() {
        let t = Template::parse("{name}-for-{actor.name}").unwrap();
        let mut bot = identity();
        bot.name = Some("deploy-bot".into());
        assert_eq!(t.render_with(&identity(), Some(&bot)).unwrap(), "api-for-deploy-bot");
        assert_eq!(t.render(&identity()), Err(MissingField("actor.name".into())));
        assert!(Template::parse("{actor.bogus}").is_err());
        assert!(Template::parse("{actor.attributes.k8s.pod_name}").is_ok());
    }

    #[test]
    fn doubled_braces_are_literal() {
        assert_eq!(render("{{namespace}}").unwrap(), "{namespace}");
        assert_eq!(render("{{{namespace}}}").unwrap(), "{payments}");
        assert_eq!(render("a}}b{{c").unwrap(), "a}b{c");
    }

    #[test]
    fn a_missing_value_names_the_field() {
        assert_eq!(render("{tenant}"), Err(MissingField("tenant".into())));
        assert_eq!(
            render("{name}/{attributes.github.ref}"),
            Err(MissingField("attributes.github.ref".into()))
        );
    }

    #[test]
    fn malformed_templates_are_errors_with_offsets() {
        let cases = [
            ("{namespace", 0, "never closed"),
            ("ab}", 2, "without a matching"),
            ("x{}", 1, "empty"),
            ("{bogus}", 0, "unknown identity field `bogus`"),
            ("{ namespace }", 0, "unknown identity field"),
            ("{attributes.}", 0, "unknown identity field"),
            ("{a{b}", 2, "inside"),
        ];
        for (t, offset, msg) in cases {
            let e = Template::parse(t).unwrap_err();
            assert_eq!(e.offset, offset, "{t}");
            assert!(e.message.contains(msg), "{t}: {}", e.message);
        }
    }
}
