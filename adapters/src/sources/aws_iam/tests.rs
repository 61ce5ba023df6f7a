use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::principal::{Kind, canonicalize};
use super::request::{RequestPolicy, check, decode, parse_amz_date, parse_authorization};
use super::sts::{CallerIdentity, error_code, parse_response};
use super::*;
use crate::aws_sign::{
    self, Credentials, GET_CALLER_IDENTITY_BODY, SERVER_ID_HEADER, regional_endpoint, signed_request,
};
use crate::build::{BuildContext, BuildError, BuildSource as _};
use crate::clock::{ManualClock, format_rfc3339};
use crate::config::kind_config;
use crate::jwt::testkit::{self, TestServer};
use crate::secret::Secret;

/// 2023-11-14T22:13:20Z
const NOW: i64 = 1_700_000_000;
const SERVER_ID: &str = "tessera.example.com";
const ENDPOINT: &str = "https://sts.us-east-1.amazonaws.com/";

fn credentials() -> Credentials {
    Credentials::new("ASIAEXAMPLEKEY", "example-secret", Some("example-session-token".into()), None, "test")
}

fn policy() -> RequestPolicy {
    RequestPolicy {
        server_id: SERVER_ID.into(),
        endpoints: vec!["https://sts.amazonaws.com".into(), "https://sts.us-east-1.amazonaws.com".into()],
        insecure_http: false,
        max_age: 300,
    }
}

fn token_at(endpoint: &str, now: i64) -> String {
    signed_request(&credentials(), "us-east-1", endpoint, SERVER_ID, now).unwrap().into_inner()
}

fn token() -> String {
    token_at(ENDPOINT, NOW)
}

fn to_json(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token).unwrap()).unwrap()
}

fn from_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The standard token with `edit` applied to its JSON.
fn edited(edit: impl FnOnce(&mut Value)) -> String {
    let mut v = to_json(&token());
    edit(&mut v);
    from_json(&v)
}

fn checked(token: &str) -> Result<request::CheckedRequest, SourceError> {
    check(decode(token)?, &policy(), NOW)
}

fn error(token: &str) -> String {
    format!("{:?}", checked(token).expect_err("refused"))
}

fn authorization(v: &Value) -> String {
    v["headers"]["authorization"].as_str().or(v["headers"]["Authorization"].as_str()).unwrap().to_string()
}

fn set_authorization(v: &mut Value, value: String) {
    v["headers"]["Authorization"] = Value::String(value);
}

// ---- the encoding and the Rust signer ----

#[test]
fn signer_output_is_the_documented_encoding() {
    let v = to_json(&token());
    assert_eq!(v["method"], "POST");
    assert_eq!(v["url"], ENDPOINT);
    assert_eq!(v["body"], "Action=GetCallerIdentity&Version=2011-06-15");
    let headers = v["headers"].as_object().unwrap();
    let mut names: Vec<&str> = headers.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "Authorization",
            "Content-Type",
            "Host",
            "X-Amz-Date",
            "X-Amz-Security-Token",
            "X-Tessera-Server-Id"
        ]
    );
    assert_eq!(headers["Host"], "sts.us-east-1.amazonaws.com");
    assert_eq!(headers["X-Amz-Date"], "20231114T221320Z");
    assert_eq!(headers["X-Tessera-Server-Id"], SERVER_ID);
    let auth = authorization(&v);
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEKEY/20231114/us-east-1/sts/aws4_request, ")
    );
    assert!(
        auth.contains(
            "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-tessera-server-id, "
        )
    );
    // No padding, URL-safe alphabet.
    assert!(!token().contains(['=', '+', '/']));
}

#[test]
fn signer_is_deterministic_and_depends_on_every_input() {
    assert_eq!(token(), token());
    let sig = |t: String| authorization(&to_json(&t)).rsplit("Signature=").next().unwrap().to_string();
    let base = sig(token());
    assert_ne!(base, sig(token_at(ENDPOINT, NOW + 1)));
    assert_ne!(base, sig(token_at("https://sts.amazonaws.com/", NOW)));
    let other_server = signed_request(&credentials(), "us-east-1", ENDPOINT, "other", NOW).unwrap();
    assert_ne!(base, sig(other_server.into_inner()));
    let other_secret =
        Credentials::new("ASIAEXAMPLEKEY", "other", Some("example-session-token".into()), None, "t");
    assert_ne!(
        base,
        sig(signed_request(&other_secret, "us-east-1", ENDPOINT, SERVER_ID, NOW).unwrap().into_inner())
    );
}

#[test]
fn signer_refuses_bad_inputs_without_echoing_credentials() {
    let c = credentials();
    for endpoint in
        ["ftp://sts.amazonaws.com/", "https://sts.amazonaws.com/x", "https://sts.amazonaws.com/?a=b", "nope"]
    {
        let e = signed_request(&c, "us-east-1", endpoint, SERVER_ID, NOW).unwrap_err();
        assert!(matches!(e, aws_sign::SignError::Endpoint(_)), "{endpoint}: {e}");
    }
    assert!(matches!(
        signed_request(&c, "US East", ENDPOINT, SERVER_ID, NOW),
        Err(aws_sign::SignError::Region(_))
    ));
    assert!(matches!(signed_request(&c, "us-east-1", ENDPOINT, "", NOW), Err(aws_sign::SignError::ServerId)));
    assert!(matches!(
        signed_request(&c, "us-east-1", ENDPOINT, "a b", NOW),
        Err(aws_sign::SignError::ServerId)
    ));
    assert_eq!(regional_endpoint("eu-west-1"), "https://sts.eu-west-1.amazonaws.com/");
}

#[test]
fn a_signed_request_passes_every_local_check() {
    let req = checked(&token()).unwrap();
    assert_eq!(req.url.as_str(), ENDPOINT);
    assert_eq!(req.region, "us-east-1");
    assert_eq!(req.signed_at, NOW);
    assert_eq!(req.body, GET_CALLER_IDENTITY_BODY);
    // Host is left to the HTTP client (it derives the same value); the rest goes as given.
    let names: Vec<&str> = req.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(!names.iter().any(|n| n.eq_ignore_ascii_case("host")), "{names:?}");
    assert_eq!(names.len(), 5);
    // Secrets stay redacted in debug output.
    let debug = format!("{req:?}");
    assert!(!debug.contains("example-session-token") && !debug.contains("Signature="), "{debug}");
}

// ---- decoding ----

#[test]
fn decode_refuses_everything_but_the_documented_shape() {
    let good = to_json(&token());
    let cases: Vec<(&str, String)> = vec![
        ("not base64url", "!!!".into()),
        ("padded", {
            let mut text = good.to_string();
            while text.len().is_multiple_of(3) {
                text.push(' ');
            }
            base64::engine::general_purpose::URL_SAFE.encode(text)
        }),
        ("standard alphabet", {
            let mut t = token();
            t.replace_range(10..11, "+");
            t
        }),
        ("not JSON", URL_SAFE_NO_PAD.encode("method=POST")),
        ("array", from_json(&json!([good.clone()]))),
        ("missing body", {
            let mut v = good.clone();
            v.as_object_mut().unwrap().remove("body");
            from_json(&v)
        }),
        ("extra member", {
            let mut v = good.clone();
            v["extra"] = json!("x");
            from_json(&v)
        }),
        ("number method", {
            let mut v = good.clone();
            v["method"] = json!(1);
            from_json(&v)
        }),
        ("header value not a string", {
            let mut v = good.clone();
            v["headers"]["X-Count"] = json!(3);
            from_json(&v)
        }),
        ("header value with newline", {
            let mut v = good.clone();
            v["headers"]["X-Evil"] = json!("a\r\nInjected: yes");
            from_json(&v)
        }),
        ("header name with space", {
            let mut v = good.clone();
            v["headers"]["X Evil"] = json!("a");
            from_json(&v)
        }),
        ("too large", "A".repeat(16 * 1024 + 1)),
    ];
    for (what, token) in cases {
        let e = decode(&token).expect_err(what);
        assert!(matches!(e, SourceError::Malformed(_)), "{what}: {e:?}");
    }
}

#[test]
fn decode_refuses_duplicate_members_and_headers() {
    let good = to_json(&token());
    let body = good.to_string();
    // The same top-level member twice.
    let twice = body.replacen("{\"body\":", "{\"body\":\"x\",\"body\":", 1);
    assert_ne!(twice, body);
    assert!(matches!(decode(&URL_SAFE_NO_PAD.encode(&twice)), Err(SourceError::Malformed(_))));
    // The same header twice, in another case: the second could override the checked one.
    let mut v = good.clone();
    v["headers"]["x-tessera-server-id"] = json!("someone-else");
    let e = decode(&from_json(&v)).unwrap_err();
    assert!(matches!(e, SourceError::Malformed(m) if m.contains("twice")), "{e:?}");
    // The same header name twice, same case (serde_json would keep the last).
    let raw = body.replacen("\"headers\":{", "\"headers\":{\"Host\":\"evil.example\",", 1);
    assert!(matches!(decode(&URL_SAFE_NO_PAD.encode(&raw)), Err(SourceError::Malformed(_))));
}

// ---- the checks ----

#[test]
fn only_post_is_accepted() {
    for method in ["GET", "post", "PUT"] {
        let t = edited(|v| v["method"] = json!(method));
        assert_eq!(error(&t), "InvalidClaim(\"method\")", "{method}");
    }
}

#[test]
fn only_the_exact_get_caller_identity_body_is_accepted() {
    for body in [
        "Action=AssumeRole&Version=2011-06-15",
        "Action=GetCallerIdentity&Version=2011-06-15&RoleArn=x",
        "Version=2011-06-15&Action=GetCallerIdentity",
        "Action=GetCallerIdentity&Version=2011-06-15 ",
        "",
    ] {
        let t = edited(|v| v["body"] = json!(body));
        assert_eq!(error(&t), "InvalidClaim(\"body\")", "{body}");
    }
}

#[test]
fn url_must_be_an_allow_listed_sts_origin_at_path_slash() {
    let url = |u: &str| error(&edited(|v| v["url"] = json!(u)));
    assert_eq!(url("https://sts.us-east-1.amazonaws.com/?Action=AssumeRole"), "InvalidClaim(\"url\")");
    assert_eq!(url("https://sts.us-east-1.amazonaws.com/x"), "InvalidClaim(\"url\")");
    assert_eq!(url("https://sts.us-east-1.amazonaws.com/#f"), "InvalidClaim(\"url\")");
    assert_eq!(url("https://user:pw@sts.us-east-1.amazonaws.com/"), "InvalidClaim(\"url\")");
    assert_eq!(url("https://sts.attacker.example/"), "UntrustedIssuer");
    assert_eq!(url("https://sts.us-east-1.amazonaws.com.attacker.example/"), "UntrustedIssuer");
    assert_eq!(url("https://sts.us-east-1.amazonaws.com:8443/"), "UntrustedIssuer");
    assert_eq!(url("http://sts.us-east-1.amazonaws.com/"), "UntrustedIssuer");
    assert_eq!(url("not a url"), "Malformed(\"signed request url is not a URL\")");
    // Upper case and an explicit default port normalize to the listed origin; the Host
    // header must then agree with what will be sent.
    let t = edited(|v| {
        v["url"] = json!("https://STS.us-east-1.amazonaws.com:443/");
    });
    assert!(checked(&t).is_ok());
}

#[test]
fn plain_http_needs_insecure_http_and_a_loopback_host() {
    let t = token_at("http://127.0.0.1:4566/", NOW);
    let mut p = policy();
    p.endpoints.push("http://127.0.0.1:4566".into());
    assert!(matches!(check(decode(&t).unwrap(), &p, NOW), Err(SourceError::UntrustedIssuer)));
    p.insecure_http = true;
    assert!(check(decode(&t).unwrap(), &p, NOW).is_ok());
    // Listed but not loopback: still refused even with insecure_http.
    let t = token_at("http://sts.internal.example/", NOW);
    p.endpoints.push("http://sts.internal.example".into());
    assert!(matches!(check(decode(&t).unwrap(), &p, NOW), Err(SourceError::UntrustedIssuer)));
}

#[test]
fn host_header_must_match_the_url() {
    let t = edited(|v| v["headers"]["Host"] = json!("sts.attacker.example"));
    assert_eq!(error(&t), "InvalidClaim(\"host\")");
    let t = edited(|v| {
        v["headers"].as_object_mut().unwrap().remove("Host");
    });
    assert!(checked(&t).is_ok(), "Host is optional");
}

#[test]
fn framing_and_routing_headers_are_refused() {
    for (name, code) in [
        ("Transfer-Encoding", "ForbiddenHeader(\"transfer-encoding\")"),
        ("connection", "ForbiddenHeader(\"connection\")"),
        ("X-Amz-Target", "ForbiddenHeader(\"x-amz-target\")"),
        ("Proxy-Foo", "ForbiddenHeader(\"proxy-*\")"),
    ] {
        let t = edited(|v| v["headers"][name] = json!("x"));
        assert_eq!(error(&t), code, "{name}");
    }
    let t = edited(|v| v["headers"]["Content-Length"] = json!("9999"));
    assert_eq!(error(&t), "InvalidClaim(\"content-length\")");
    let t = edited(|v| v["headers"]["Content-Length"] = json!("43"));
    assert!(checked(&t).is_ok(), "a correct Content-Length is fine");
}

#[test]
fn content_type_must_be_a_form() {
    let t = edited(|v| v["headers"]["Content-Type"] = json!("application/json"));
    assert_eq!(error(&t), "InvalidClaim(\"content-type\")");
    let t = edited(|v| {
        v["headers"].as_object_mut().unwrap().remove("Content-Type");
    });
    assert_eq!(error(&t), "MissingClaim(\"content-type\")");
    let t = edited(|v| v["headers"]["Content-Type"] = json!("Application/X-WWW-Form-Urlencoded"));
    assert!(checked(&t).is_ok());
}

#[test]
fn authorization_must_be_a_well_formed_sigv4_header() {
    let t = edited(|v| {
        v["headers"].as_object_mut().unwrap().remove("Authorization");
    });
    assert_eq!(error(&t), "MissingClaim(\"authorization\")");
    let good = authorization(&to_json(&token()));
    let swap = |from: &str, to: &str| {
        let value = good.replacen(from, to, 1);
        assert_ne!(value, good, "{from}");
        error(&edited(|v| set_authorization(v, value)))
    };
    assert_eq!(swap("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"), "DisallowedAlgorithm");
    assert_eq!(swap("AWS4-HMAC-SHA256 ", "AWS "), "DisallowedAlgorithm");
    assert_eq!(swap("/sts/", "/iam/"), "InvalidClaim(\"credential scope\")");
    assert_eq!(swap("/aws4_request", "/aws4_other"), "InvalidClaim(\"credential scope\")");
    assert_eq!(swap("/20231114/", "/20231113/"), "InvalidClaim(\"credential scope\")");
    let malformed = "Malformed(\"Authorization is not a SigV4 header\")";
    assert_eq!(swap("Signature=", "Signature=zz"), malformed);
    assert_eq!(swap("Credential=", "Cred="), malformed);
    assert_eq!(swap(", SignedHeaders=", ", Signature=00, SignedHeaders="), malformed);
    assert_eq!(swap("content-type;host", "host;content-type"), malformed);
    assert_eq!(swap("content-type;host", "Content-Type;host"), malformed);
    assert_eq!(swap("/us-east-1/", "/US-EAST-1/"), malformed);

    let parsed = parse_authorization(&good).unwrap();
    assert_eq!(parsed.region, "us-east-1");
    assert_eq!(parsed.scope_date, "20231114");
    assert_eq!(
        parsed.signed_headers,
        ["content-type", "host", "x-amz-date", "x-amz-security-token", SERVER_ID_HEADER]
    );
}

#[test]
fn host_and_date_must_be_signed_and_signed_headers_present() {
    let good = authorization(&to_json(&token()));
    for (from, to) in [(";host;", ";"), (";x-amz-date;", ";")] {
        let t = edited(|v| set_authorization(v, good.replacen(from, to, 1)));
        assert_eq!(error(&t), "InvalidClaim(\"SignedHeaders\")", "{from}");
    }
    let t = edited(|v| {
        v["headers"].as_object_mut().unwrap().remove("X-Amz-Security-Token");
    });
    assert_eq!(error(&t), "InvalidClaim(\"SignedHeaders\")", "a signed header that is not sent");
}

#[test]
fn server_id_must_be_present_signed_and_equal() {
    let t = edited(|v| {
        v["headers"].as_object_mut().unwrap().remove("X-Tessera-Server-Id");
        let auth = authorization(v).replace(";x-tessera-server-id", "");
        set_authorization(v, auth);
    });
    assert_eq!(error(&t), "MissingClaim(\"x-tessera-server-id\")");
    let t = edited(|v| {
        let auth = authorization(v).replace(";x-tessera-server-id", "");
        set_authorization(v, auth);
    });
    assert_eq!(error(&t), "InvalidClaim(\"x-tessera-server-id\")");
    let other = signed_request(&credentials(), "us-east-1", ENDPOINT, "other-tessera", NOW).unwrap();
    assert_eq!(error(other.expose()), "AudienceMismatch");
    let prefix = signed_request(&credentials(), "us-east-1", ENDPOINT, "tessera.example.co", NOW).unwrap();
    assert_eq!(error(prefix.expose()), "AudienceMismatch");
    let t = edited(|v| v["headers"]["X-Tessera-Server-Id"] = json!(SERVER_ID.to_uppercase()));
    assert_eq!(error(&t), "AudienceMismatch", "compared exactly");
}

#[test]
fn x_amz_date_must_be_fresh_in_both_directions() {
    let at = |signed: i64| check(decode(&token_at(ENDPOINT, signed)).unwrap(), &policy(), NOW);
    assert!(at(NOW - 300).is_ok());
    assert!(at(NOW + 300).is_ok());
    assert!(matches!(at(NOW - 301), Err(SourceError::Expired)));
    assert!(matches!(at(NOW - 3600), Err(SourceError::Expired)));
    assert!(matches!(at(NOW + 301), Err(SourceError::IssuedInFuture)));
    let t = edited(|v| {
        v["headers"].as_object_mut().unwrap().remove("X-Amz-Date");
    });
    assert_eq!(error(&t), "MissingClaim(\"x-amz-date\")");
}

#[test]
fn x_amz_date_parses_strictly() {
    for instant in [0, 951_782_400, NOW, 1_795_422_256, 4_102_444_799] {
        let text = format_rfc3339(instant).replace(['-', ':'], "");
        assert_eq!(parse_amz_date(&text).unwrap(), instant, "{text}");
    }
    for bad in [
        "2023-11-14T22:13:20Z",
        "20231114T221320",
        "20231114 221320Z",
        "20231314T221320Z",
        "20230229T000000Z",
        "20231114T246000Z",
        "20231114T221360Z",
        "2023111AT221320Z",
        "+2023114T221320Z",
        "",
    ] {
        assert!(matches!(parse_amz_date(bad), Err(SourceError::Malformed(_))), "{bad}");
    }
    assert!(parse_amz_date("20240229T000000Z").is_ok());
    let t = edited(|v| v["headers"]["X-Amz-Date"] = json!("2023-11-14T22:13:20Z"));
    assert!(matches!(checked(&t), Err(SourceError::Malformed(_))));
}

// ---- the STS answer ----

fn answer(result: &str) -> String {
    format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">{result}<ResponseMetadata><RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
    )
}

const ROLE_RESULT: &str = "<GetCallerIdentityResult><Arn>arn:aws:sts::123456789012:assumed-role/payments-api/run-1</Arn><UserId>AROAEXAMPLEID:run-1</UserId><Account>123456789012</Account></GetCallerIdentityResult>";

#[test]
fn the_documented_answer_parses() {
    let pretty = r#"<?xml version="1.0" encoding="UTF-8"?>
<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>arn:aws:iam::123456789012:user/Alice</Arn>
    <UserId>AIDACKCEVSQ6C2EXAMPLE</UserId>
    <Account>123456789012</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata>
    <RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId>
  </ResponseMetadata>
</GetCallerIdentityResponse>
"#;
    assert_eq!(
        parse_response(pretty.as_bytes()).unwrap(),
        CallerIdentity {
            arn: "arn:aws:iam::123456789012:user/Alice".into(),
            user_id: "AIDACKCEVSQ6C2EXAMPLE".into(),
            account: "123456789012".into(),
        }
    );
    let role = parse_response(answer(ROLE_RESULT).as_bytes()).unwrap();
    assert_eq!(role.user_id, "AROAEXAMPLEID:run-1");
}

#[test]
fn the_answer_is_parsed_strictly() {
    let arn = "<Arn>arn:aws:iam::123456789012:user/Alice</Arn>";
    let user = "<UserId>AIDA</UserId>";
    let account = "<Account>123456789012</Account>";
    let result = |inner: &str| format!("<GetCallerIdentityResult>{inner}</GetCallerIdentityResult>");
    let good = result(&format!("{arn}{user}{account}"));
    let cases: Vec<(&str, String)> = vec![
        ("malformed", answer(&good).replace("</Arn>", "</Ar>")),
        ("not XML", "{\"Arn\":\"x\"}".into()),
        (
            "two results",
            answer(&format!(
                "{good}{}",
                result(&format!("{}{user}{account}", arn.replace("Alice", "Admin")))
            )),
        ),
        ("no result", answer("")),
        ("Arn twice", answer(&result(&format!("{arn}{user}{account}{}", arn.replace("Alice", "Admin"))))),
        ("Account missing", answer(&result(&format!("{arn}{user}")))),
        ("extra field", answer(&result(&format!("{arn}{user}{account}<Extra>x</Extra>")))),
        ("extra element at top", answer(&format!("{good}<Injected/>"))),
        ("text at top", answer(&format!("{good}text"))),
        ("comment in result", answer(&result(&format!("{arn}<!-- x -->{user}{account}")))),
        ("nested element in a field", answer(&result(&format!("<Arn><b>x</b></Arn>{user}{account}")))),
        ("empty field", answer(&result(&format!("<Arn></Arn>{user}{account}")))),
        ("attribute on a field", answer(&result(&format!("<Arn a=\"1\">x</Arn>{user}{account}")))),
        ("wrong namespace", answer(&good).replace("2011-06-15/", "2099-01-01/")),
        ("no namespace", answer(&good).replace(" xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"", "")),
        (
            "field in another namespace",
            answer(&result(&format!("<x:Arn xmlns:x=\"urn:x\">x</x:Arn>{arn}{user}{account}"))),
        ),
        ("wrong root", good.clone()),
        (
            "DTD with an entity",
            format!(
                "<!DOCTYPE r [<!ENTITY a \"arn:aws:iam::123456789012:user/Admin\">]>{}",
                answer(&result(&format!("<Arn>&a;</Arn>{user}{account}")))
            ),
        ),
        ("not UTF-8", String::from_utf8_lossy(b"\xff\xfe<a/>").into_owned()),
    ];
    for (what, xml) in cases {
        assert!(parse_response(xml.as_bytes()).is_err(), "{what} was accepted:\n{xml}");
    }
    assert!(parse_response(b"\xff\xfe").is_err());
}

#[test]
fn error_codes_are_read_from_both_error_shapes() {
    let aws = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error><RequestId>x</RequestId></ErrorResponse>"#;
    let moto = r#"<?xml version="1.0" encoding="utf-8"?><ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code><Message>m</Message></Error></Errors></ErrorResponse>"#;
    assert_eq!(error_code(aws.as_bytes()).as_deref(), Some("SignatureDoesNotMatch"));
    assert_eq!(error_code(moto.as_bytes()).as_deref(), Some("InvalidClientTokenId"));
    assert_eq!(error_code(b"<html>Forbidden</html>"), None);
    assert_eq!(error_code(b"<ErrorResponse><Error><Code>a b</Code></Error></ErrorResponse>"), None);
}

// ---- the principal ----

fn caller(arn: &str, account: &str) -> CallerIdentity {
    CallerIdentity { arn: arn.into(), user_id: "AROAEXAMPLEID:run-1".into(), account: account.into() }
}

#[test]
fn assumed_roles_are_canonicalized_to_their_role() {
    let p =
        canonicalize(&caller("arn:aws:sts::123456789012:assumed-role/payments-api/run-1", "123456789012"))
            .unwrap();
    assert_eq!(p.arn, "arn:aws:iam::123456789012:role/payments-api");
    assert_eq!(p.id(), "aws://123456789012/role/payments-api");
    assert_eq!(p.kind, Kind::Role { session: "run-1".into() });
    assert_eq!(p.name, "payments-api");
    // The same role name in another account is another identity.
    let other =
        canonicalize(&caller("arn:aws:sts::210987654321:assumed-role/payments-api/run-1", "210987654321"))
            .unwrap();
    assert_eq!(other.id(), "aws://210987654321/role/payments-api");
    assert_ne!(other.id(), p.id());
    // Other partitions.
    let cn = canonicalize(&caller("arn:aws-cn:sts::123456789012:assumed-role/r/s1", "123456789012")).unwrap();
    assert_eq!(cn.arn, "arn:aws-cn:iam::123456789012:role/r");
    assert_eq!(cn.partition, "aws-cn");
    let gov = canonicalize(&caller("arn:aws-us-gov:iam::123456789012:user/ops/bob", "123456789012")).unwrap();
    assert_eq!(gov.arn, "arn:aws-us-gov:iam::123456789012:user/ops/bob");
}

#[test]
fn users_keep_their_arn_and_are_named_by_their_last_segment() {
    let p = canonicalize(&caller("arn:aws:iam::123456789012:user/ci/deployer", "123456789012")).unwrap();
    assert_eq!(p.arn, "arn:aws:iam::123456789012:user/ci/deployer");
    assert_eq!(p.id(), "aws://123456789012/user/deployer");
    assert_eq!(p.kind, Kind::User);
}

#[test]
fn other_principals_and_inconsistent_answers_are_refused() {
    let refuse = |arn: &str, account: &str| canonicalize(&caller(arn, account)).unwrap_err();
    assert!(matches!(refuse("arn:aws:iam::123456789012:root", "123456789012"), SourceError::Policy(_)));
    assert!(matches!(
        refuse("arn:aws:sts::123456789012:federated-user/bob", "123456789012"),
        SourceError::Policy(_)
    ));
    assert!(matches!(refuse("arn:aws:iam::123456789012:group/g", "123456789012"), SourceError::Policy(_)));
    assert!(matches!(refuse("arn:aws-iso:iam::123456789012:user/u", "123456789012"), SourceError::Policy(_)));
    let upstream = |e: SourceError| matches!(e, SourceError::Upstream { retryable: false, .. });
    assert!(upstream(refuse("arn:aws:iam::123456789012:user/u", "210987654321")), "ARN and Account disagree");
    assert!(upstream(refuse("arn:aws:iam::123456789012:user/u", "12345")), "not an account id");
    assert!(upstream(refuse("arn:aws:sts::123456789012:assumed-role/r", "123456789012")), "no session");
    assert!(
        upstream(refuse("arn:aws:sts::123456789012:assumed-role/r/s/x", "123456789012")),
        "slash in session"
    );
    assert!(
        upstream(refuse("arn:aws:sts:us-east-1:123456789012:assumed-role/r/s1", "123456789012")),
        "region"
    );
    assert!(upstream(refuse("arn:aws:iam::123456789012:user/a//u", "123456789012")), "empty path segment");
    assert!(upstream(refuse("not-an-arn", "123456789012")));
}

// ---- the source, against a loopback server playing STS ----

fn context(clock: &Arc<ManualClock>) -> BuildContext {
    testkit::context(Arc::clone(clock), std::env::temp_dir())
}

fn source_config(extra: Value) -> AwsIamSourceConfig {
    let entry = testkit::merged(json!({ "type": "aws_iam", "name": "aws", "server_id": SERVER_ID }), &extra);
    kind_config(KIND, entry).unwrap()
}

struct Fixture {
    server: TestServer,
    source: Arc<dyn IdentitySource>,
    clock: Arc<ManualClock>,
}

impl Fixture {
    async fn new(extra: Value) -> Self {
        let server = TestServer::start().await;
        let clock = Arc::new(ManualClock::new(NOW));
        let mut config = json!({ "sts_endpoints": [server.base()], "insecure_http": true });
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        let source = source_config(config).build(&context(&clock)).unwrap();
        Self { server, source, clock }
    }

    fn token(&self) -> SubjectToken {
        let value =
            signed_request(&credentials(), "eu-west-1", &self.server.url("/"), SERVER_ID, self.clock.now())
                .unwrap();
        SubjectToken { token_type: SubjectTokenType::AwsSignedRequest, value }
    }

    async fn verify(&self) -> Result<VerifiedIdentity, SourceError> {
        self.source.verify(&self.token()).await
    }
}

#[tokio::test]
async fn a_verified_role_becomes_the_documented_identity() {
    let f = Fixture::new(json!({})).await;
    f.server.set("/", 200, answer(ROLE_RESULT));
    let verified = f.verify().await.unwrap();
    let id = verified.identity();
    assert_eq!(id.id, "aws://123456789012/role/payments-api");
    let shape = source_config(json!({})).id_shape().unwrap();
    assert_eq!(shape.render(id).as_deref(), Some(id.id.as_str()));
    assert_eq!(id.provider, "aws_iam");
    assert_eq!(id.source, "aws");
    assert_eq!(id.issuer, f.server.url("/"));
    assert_eq!(id.subject, "arn:aws:iam::123456789012:role/payments-api");
    assert_eq!(id.tenant.as_deref(), Some("123456789012"));
    assert_eq!(id.namespace, None);
    assert_eq!(id.name.as_deref(), Some("payments-api"));
    assert_eq!(id.instance.as_deref(), Some("run-1"));
    assert_eq!(id.region.as_deref(), Some("eu-west-1"));
    assert_eq!(id.expires_at, NOW + 300);
    let attrs: Vec<(&str, &str)> = id.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        attrs,
        [
            ("aws.account", "123456789012"),
            ("aws.arn", "arn:aws:iam::123456789012:role/payments-api"),
            ("aws.caller_arn", "arn:aws:sts::123456789012:assumed-role/payments-api/run-1"),
            ("aws.partition", "aws"),
            ("aws.principal_id", "AROAEXAMPLEID:run-1"),
            ("aws.principal_type", "role"),
            ("aws.session_name", "run-1"),
        ]
    );
    assert_eq!(f.server.hits("/"), 1);
}

#[tokio::test]
async fn sts_refusals_and_failures_map_to_what_happened() {
    let f = Fixture::new(json!({})).await;
    let sts_error = |code: &str| {
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>m</Message></Error><RequestId>r</RequestId></ErrorResponse>"
        )
    };
    let cases: Vec<(u16, String, &str)> = vec![
        (403, sts_error("SignatureDoesNotMatch"), "BadSignature"),
        (403, sts_error("InvalidClientTokenId"), "BadSignature"),
        (403, sts_error("ExpiredToken"), "Expired"),
        (400, sts_error("RequestExpired"), "Expired"),
        (400, sts_error("Throttling"), "Upstream { retryable: true"),
        (403, "<html>no</html>".into(), "BadSignature"),
        (500, "oops".into(), "Upstream { retryable: true"),
        (503, "".into(), "Upstream { retryable: true"),
        (302, "".into(), "Upstream { retryable: false"),
        (404, "".into(), "Upstream { retryable: false"),
        (200, answer(&format!("{ROLE_RESULT}{ROLE_RESULT}")), "Upstream { retryable: false"),
        (200, "{\"Arn\":\"x\"}".into(), "Upstream { retryable: false"),
        (200, "x".repeat(70 * 1024), "Upstream { retryable: false"),
    ];
    for (status, body, expected) in cases {
        f.server.set("/", status, body.clone());
        let e = f.verify().await.expect_err("refused");
        assert!(format!("{e:?}").starts_with(expected), "{status} {}: {e:?}", &body[..body.len().min(80)]);
    }
}

#[tokio::test]
async fn sts_timeouts_are_retryable_upstream_failures() {
    let f = Fixture::new(json!({ "timeout": "1s" })).await;
    f.server.set_delayed("/", answer(ROLE_RESULT), Duration::from_secs(3));
    let e = f.verify().await.unwrap_err();
    assert!(matches!(e, SourceError::Upstream { retryable: true, .. }), "{e:?}");
}

#[tokio::test]
async fn sts_unreachable_is_a_retryable_upstream_failure() {
    let f = Fixture::new(json!({})).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let source = source_config(json!({ "sts_endpoints": [closed], "insecure_http": true }))
        .build(&context(&f.clock))
        .unwrap();
    let value = signed_request(&credentials(), "us-east-1", &format!("{closed}/"), SERVER_ID, NOW).unwrap();
    let e = source
        .verify(&SubjectToken { token_type: SubjectTokenType::AwsSignedRequest, value })
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::Upstream { retryable: true, .. }), "{e:?}");
}

#[tokio::test]
async fn refused_requests_never_reach_sts() {
    let f = Fixture::new(json!({})).await;
    f.server.set("/", 200, answer(ROLE_RESULT));
    let mut v = to_json(f.token().value.expose());
    v["body"] = json!("Action=AssumeRole&Version=2011-06-15");
    let bad =
        SubjectToken { token_type: SubjectTokenType::AwsSignedRequest, value: Secret::new(from_json(&v)) };
    assert!(matches!(f.source.verify(&bad).await, Err(SourceError::InvalidClaim("body"))));
    let stale = f.token();
    f.clock.advance(301);
    assert!(matches!(f.source.verify(&stale).await, Err(SourceError::Expired)));
    assert_eq!(f.server.hits("/"), 0);
}

#[tokio::test]
async fn allowed_accounts_restrict_who_is_accepted() {
    let f = Fixture::new(json!({ "allowed_accounts": ["210987654321"] })).await;
    f.server.set("/", 200, answer(ROLE_RESULT));
    let e = f.verify().await.unwrap_err();
    assert!(matches!(&e, SourceError::Policy(m) if m.contains("123456789012")), "{e:?}");
    let f = Fixture::new(json!({ "allowed_accounts": ["210987654321", "123456789012"] })).await;
    f.server.set("/", 200, answer(ROLE_RESULT));
    assert!(f.verify().await.is_ok());
}

#[tokio::test]
async fn only_aws_signed_requests_are_accepted_and_no_issuer_is_claimed() {
    let f = Fixture::new(json!({})).await;
    assert!(f.source.accepts(SubjectTokenType::AwsSignedRequest));
    assert!(!f.source.accepts(SubjectTokenType::Jwt));
    assert!(!f.source.accepts(SubjectTokenType::IdToken));
    assert!(f.source.issuers().is_empty());
    assert_eq!(f.source.kind(), "aws_iam");
    assert_eq!(f.source.name(), "aws");
    let mut token = f.token();
    token.token_type = SubjectTokenType::Jwt;
    assert!(matches!(f.source.verify(&token).await, Err(SourceError::UnsupportedTokenType)));
}

// ---- config ----

#[test]
fn config_defaults_are_the_documented_ones() {
    let c: AwsIamSourceConfig =
        serde_json::from_value(json!({ "name": "aws", "server_id": SERVER_ID })).unwrap();
    assert_eq!(c.max_request_age, Duration::from_secs(300));
    assert_eq!(c.timeout, Duration::from_secs(10));
    assert!(!c.insecure_http);
    assert_eq!(c.allowed_accounts, None);
    assert_eq!(c.sts_endpoints.len(), 1 + config::AWS_REGIONS.len());
    assert_eq!(c.sts_endpoints[0], "https://sts.amazonaws.com");
    assert!(c.sts_endpoints.contains(&"https://sts.eu-central-1.amazonaws.com".to_string()));
    assert!(c.sts_endpoints.iter().all(|e| e.starts_with("https://sts.") && e.ends_with(".amazonaws.com")));
    // server_id is required; unknown keys are refused.
    assert!(serde_json::from_value::<AwsIamSourceConfig>(json!({ "name": "aws" })).is_err());
    assert!(
        serde_json::from_value::<AwsIamSourceConfig>(json!({ "name": "aws", "server_id": "x", "role": "y" }))
            .is_err()
    );
}

#[test]
fn config_errors_name_their_key() {
    let clock = Arc::new(ManualClock::new(NOW));
    let field = |extra: Value| -> Option<&'static str> {
        let e: BuildError = source_config(extra).build(&context(&clock)).unwrap_err();
        e.field
    };
    assert_eq!(field(json!({ "name": "Bad Name" })), Some("name"));
    assert_eq!(field(json!({ "server_id": "" })), Some("server_id"));
    assert_eq!(field(json!({ "server_id": "has space" })), Some("server_id"));
    assert_eq!(field(json!({ "sts_endpoints": [] })), Some("sts_endpoints"));
    assert_eq!(field(json!({ "sts_endpoints": ["http://sts.amazonaws.com"] })), Some("sts_endpoints"));
    assert_eq!(field(json!({ "sts_endpoints": ["http://127.0.0.1:5000"] })), Some("sts_endpoints"));
    assert_eq!(
        field(json!({ "sts_endpoints": ["http://sts.internal.example"], "insecure_http": true })),
        Some("sts_endpoints")
    );
    assert_eq!(field(json!({ "sts_endpoints": ["https://sts.amazonaws.com/path"] })), Some("sts_endpoints"));
    assert_eq!(field(json!({ "sts_endpoints": ["not a url"] })), Some("sts_endpoints"));
    assert_eq!(field(json!({ "max_request_age": "16m" })), Some("max_request_age"));
    assert_eq!(field(json!({ "max_request_age": 0 })), Some("max_request_age"));
    assert_eq!(field(json!({ "timeout": "2m" })), Some("timeout"));
    assert_eq!(field(json!({ "allowed_accounts": [] })), Some("allowed_accounts"));
    assert_eq!(field(json!({ "allowed_accounts": ["12345"] })), Some("allowed_accounts"));
    assert!(
        source_config(json!({ "max_request_age": "15m", "allowed_accounts": ["123456789012"] }))
            .build(&context(&clock))
            .is_ok()
    );
}
