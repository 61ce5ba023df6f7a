use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sqlx::postgres::PgPool;
use sqlx::{Connection as _, Executor as _, Row as _};

use super::sql::{check_group_name, role_name, role_stem, scram_verifier_with};
use super::*;
use crate::build::{BuildContext, BuildTarget};
use crate::clock::{Clock as _, ManualClock};
use crate::config::kind_config;
use crate::identity::Identity;
use crate::oauth::token_type;
use crate::target::{
    CredentialTarget, Grant, IssuedCredential, PlatformCredentials, PostgresCredentials, RuleParam, RuleText,
    SigningAlgorithm, TargetError,
};
use crate::targets::testkit::{self, GrantParts, assert_cache_keys, workflow};

/// The machine's PostgreSQL (trust authentication), as a superuser.
const SUPERUSER_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn context_with(clock: Arc<ManualClock>) -> BuildContext {
    BuildContext { clock, ..testkit::context(&[SigningAlgorithm::Es256]) }
}

fn config(value: Value) -> PostgresTargetConfig {
    kind_config(KIND, value).unwrap()
}

fn base() -> Value {
    json!({
        "type": "postgres",
        "name": "orders-db",
        "admin_url": "postgres://tessera_admin:s3cret-admin-pw@db.internal:6432/orders",
        "groups": ["orders_read", "orders_write"],
        "owner": "orders_owner",
    })
}

fn with(mut value: Value, key: &str, v: Value) -> Value {
    value[key] = v;
    value
}

fn target(value: Value) -> PostgresTarget {
    config(value).target(&testkit::context(&[])).unwrap()
}

fn grant(target: &str, group: &str, ttl: Duration) -> Grant {
    testkit::grant(testkit::identity(Some("api")), target, Some(group), ttl, json!({ "group": group }))
}

/// The login an issued credential carries.
fn login(issued: &IssuedCredential) -> PostgresCredentials {
    match &issued.platform_credentials {
        Some(PlatformCredentials::Postgres(login)) => login.clone(),
        other => panic!("no PostgreSQL login: {other:?}"),
    }
}

#[test]
fn defaults_are_documented_values() {
    let c = config(base());
    assert_eq!(c.role_prefix, "tessera_");
    assert_eq!((c.host.as_deref(), c.port, c.database.as_deref()), (None, None, None));
    assert_eq!(c.max_ttl, Duration::from_secs(3600));
    assert_eq!(c.default_ttl, Duration::from_secs(900));
    assert_eq!(c.sweep_interval, Duration::from_secs(60));
    assert_eq!(c.sweep_batch, 100);
    assert!(c.terminate_sessions && c.cache);
    assert_eq!(c.timeout, Duration::from_secs(5));
    assert_eq!(c.max_connections, 4);
    let t = c.build(&testkit::context(&[])).unwrap();
    assert_eq!((t.kind(), t.name()), ("postgres", "orders-db"));
    assert_eq!(t.grant_keys(), &["group"]);
    assert_eq!(t.required_grant_keys(), vec!["group"]);
    assert_eq!(t.scope_param(), Some("group"));
    assert_eq!(t.issued_token_type(), token_type::POSTGRES_CREDENTIALS);
    assert_eq!(t.min_ttl(), Duration::from_secs(60));
    assert_eq!(t.issued_jwt(), None);
    assert!(t.cacheable());
    assert!(t.upstream_endpoints().is_empty(), "no URL for doctor to fetch");
}

#[test]
fn clients_connect_where_the_admin_url_points_unless_told_otherwise() {
    let s = &target(base()).inner.settings;
    assert_eq!(
        (s.host.as_deref(), s.port, s.database.as_deref()),
        (Some("db.internal"), Some(6432), Some("orders"))
    );
    let told = with(
        with(with(base(), "host", json!("pgbouncer.internal")), "port", json!(5433)),
        "database",
        json!("app"),
    );
    let s = &target(told).inner.settings;
    assert_eq!(
        (s.host.as_deref(), s.port, s.database.as_deref()),
        (Some("pgbouncer.internal"), Some(5433), Some("app"))
    );
}

#[test]
fn the_admin_password_is_in_no_debug_output_and_no_error() {
    let t = target(base());
    assert!(!format!("{t:?}").contains("s3cret-admin-pw"), "{t:?}");
    assert!(!format!("{:?}", config(base())).contains("s3cret-admin-pw"));
    let bad = with(base(), "admin_url", json!("postgres://u:s3cret-admin-pw@db:notaport/x"));
    let err = config(bad).target(&testkit::context(&[])).unwrap_err();
    assert_eq!(err.field, Some("admin_url"));
    assert!(!err.message.contains("s3cret"), "{}", err.message);
}

#[test]
fn build_errors_name_the_field() {
    let cases = [
        (with(base(), "name", json!("Bad Name")), "name"),
        (with(base(), "admin_url", json!("mysql://db/x")), "admin_url"),
        (with(base(), "groups", json!([])), "groups"),
        (with(base(), "groups", json!(["orders read"])), "groups"),
        (with(base(), "groups", json!(["x\"; DROP ROLE y; --"])), "groups"),
        (with(base(), "groups", json!(["pg_read_server_files"])), "groups"),
        (with(base(), "groups", json!(["PG_monitor"])), "groups"),
        (with(base(), "owner", json!("orders_read")), "owner"),
        (with(base(), "owner", json!("pg_database_owner")), "owner"),
        (with(base(), "role_prefix", json!("Tessera")), "role_prefix"),
        (with(base(), "role_prefix", json!("orders_")), "role_prefix"),
        (with(base(), "role_prefix", json!("a_very_long_prefix_over_20")), "role_prefix"),
        (with(base(), "max_ttl", json!("30s")), "max_ttl"),
        (with(base(), "max_ttl", json!("25h")), "max_ttl"),
        (with(base(), "default_ttl", json!("2h")), "default_ttl"),
        (with(base(), "sweep_interval", json!("2h")), "sweep_interval"),
        (with(base(), "sweep_batch", json!(0)), "sweep_batch"),
        (with(base(), "timeout", json!("90s")), "timeout"),
        (with(base(), "max_connections", json!(0)), "max_connections"),
        (with(base(), "host", json!("db internal")), "host"),
        (with(base(), "database", json!("")), "database"),
    ];
    for (value, field) in cases {
        let err = config(value.clone()).target(&testkit::context(&[])).unwrap_err();
        assert_eq!(err.field, Some(field), "{value}: {}", err.message);
    }
}

#[test]
fn identifiers_and_literals_are_quoted_as_postgresql_quotes_them() {
    assert_eq!(quote_ident("orders_read").unwrap(), "\"orders_read\"");
    assert_eq!(quote_ident("Mixed Case").unwrap(), "\"Mixed Case\"");
    assert_eq!(quote_ident("a\"b").unwrap(), "\"a\"\"b\"");
    assert_eq!(quote_ident("x\"; DROP ROLE y; --").unwrap(), "\"x\"\"; DROP ROLE y; --\"");
    assert!(quote_ident("").is_err());
    assert!(quote_ident("a\0b").is_err());
    assert!(quote_ident(&"a".repeat(64)).is_err(), "PostgreSQL would cut it");
    assert_eq!(quote_literal("plain").unwrap(), "'plain'");
    assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
    assert_eq!(quote_literal("a\\b'c").unwrap(), "E'a\\\\b''c'");
    assert!(quote_literal("a\0").is_err());
}

#[test]
fn group_names_are_plain_identifiers_and_never_predefined_roles() {
    for ok in ["orders_read", "_x", "A$1", &"g".repeat(63)] {
        assert!(check_group_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", "1x", "a-b", "a b", "a\"b", "pg_signal_backend", "Pg_x", &"g".repeat(64), "é"] {
        assert!(check_group_name(bad).is_err(), "{bad}");
    }
}

/// RFC 7677 §3's example: user `user`, password `pencil`, salt `W22ZaJ0SNY7soEsUEjb6gQ==`,
/// 4096 iterations. The server's final message `v=` is HMAC(ServerKey, AuthMessage), so
/// the verifier's ServerKey is checked against it; StoredKey = H(ClientKey), and the
/// client proof XOR ClientSignature(StoredKey) gives back ClientKey.
#[test]
fn the_scram_verifier_matches_rfc_7677s_example() {
    use aws_lc_rs::{digest, hmac};
    let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let verifier = scram_verifier_with("pencil", &salt, 4096).unwrap();
    let (head, keys) = verifier.rsplit_once('$').unwrap();
    assert_eq!(head, "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==");
    let (stored_key, server_key) = keys.split_once(':').unwrap();
    let (stored_key, server_key) =
        (STANDARD.decode(stored_key).unwrap(), STANDARD.decode(server_key).unwrap());
    let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
        r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
        c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    let server_signature =
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &server_key), auth_message.as_bytes());
    assert_eq!(STANDARD.encode(server_signature.as_ref()), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    let client_signature =
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &stored_key), auth_message.as_bytes());
    let proof = STANDARD.decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").unwrap();
    let client_key: Vec<u8> = proof.iter().zip(client_signature.as_ref()).map(|(a, b)| a ^ b).collect();
    assert_eq!(digest::digest(&digest::SHA256, &client_key).as_ref(), stored_key.as_slice());
    assert!(scram_verifier_with("p\u{e9}ncil", &salt, 4096).is_err(), "only what SASLprep leaves alone");
}

#[test]
fn passwords_are_long_random_and_plain() {
    let a = sql::password().unwrap();
    let b = sql::password().unwrap();
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
    assert_ne!(a, b);
    let v1 = scram_verifier("same").unwrap();
    assert_ne!(v1, scram_verifier("same").unwrap(), "a fresh salt each time");
}

#[test]
fn role_names_are_readable_bounded_and_apart_per_identity() {
    let stem = role_stem("tessera_", "k8s://eks-prod/ns/payments/sa/api", Some("api"));
    assert!(stem.starts_with("tessera_api_"), "{stem}");
    assert_eq!(
        stem,
        role_stem("tessera_", "k8s://eks-prod/ns/payments/sa/api", Some("api")),
        "deterministic"
    );
    assert_ne!(
        stem,
        role_stem("tessera_", "k8s://eks-dev/ns/payments/sa/api", Some("api")),
        "same name, other id"
    );
    let one = role_name(&stem).unwrap();
    assert!(one.starts_with(&format!("{stem}_")) && one != role_name(&stem).unwrap(), "{one}");
    let long_id = format!("github://octo-org/{}", "x".repeat(300));
    for (id, name) in [
        (long_id.as_str(), None),
        ("spiffe://td/\"; DROP ROLE postgres; --", None),
        ("aws://1/role/Ünïcödé Name", Some("Ünïcödé Name")),
        ("x", Some("___")),
        ("", None),
    ] {
        let role = role_name(&role_stem("a_twenty_char_prefix", id, name)).unwrap();
        assert!(role.len() <= 63, "{role}");
        assert!(role.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{role}");
        assert!(role.starts_with("a_twenty_char_prefix"), "{role}");
    }
    assert!(role_stem("t_", "aws://1/role/Deploy-Bot", None).starts_with("t_deploy_bot_"));
}

/// The cache key: every input that shapes the login counts, and the identity's id and
/// name (which make the role name) count too.
#[test]
fn every_input_of_the_login_is_in_the_cache_key() {
    let t = target(base());
    let key = |p: &GrantParts| t.describe_request(&p.grant()).unwrap().digest();
    let parts = GrantParts {
        identity: workflow("deploy"),
        rule: "ci-reads-orders",
        target: "orders-db",
        scope: Some("orders_read"),
        ttl: Duration::from_secs(900),
        claims: json!({}),
        params: json!({ "group": "orders_read" }),
    };
    let other_repo = Identity { id: "github://octo-org/ledger".into(), ..workflow("deploy") };
    let changed = [
        ("group", parts.with(|p| p.params["group"] = json!("orders_write"))),
        ("ttl", parts.with(|p| p.ttl = Duration::from_secs(1800))),
        ("identity id", parts.with(|p| p.identity = other_repo.clone())),
        ("identity name", parts.with(|p| p.identity = workflow("release"))),
        ("rule", parts.with(|p| p.rule = "other")),
    ];
    // A lifetime over the target's maximum is capped: it asks for the same login.
    let base_capped = parts.with(|p| p.ttl = Duration::from_secs(3600));
    let capped = [("ttl over the cap", base_capped.with(|p| p.ttl = Duration::from_secs(7200)))];
    assert_cache_keys(key, &parts, &changed, &[]);
    assert_eq!(key(&capped[0].1).len(), 32);
    let t_desc = |p: &GrantParts| t.describe_request(&p.grant()).unwrap().request().clone();
    assert_eq!(t_desc(&capped[0].1), t_desc(&base_capped));
}

#[test]
fn rules_may_grant_only_the_targets_groups() {
    let t = target(base());
    assert!(t.check_grant_param("group", &RuleParam::Text(RuleText::Literal("orders_read"))).is_ok());
    let err = t.check_grant_param("group", &RuleParam::Text(RuleText::Literal("postgres"))).unwrap_err();
    assert!(err.contains("not one of the target's groups"), "{err}");
    assert!(t.check_grant_param("group", &RuleParam::Text(RuleText::Template)).is_ok());
    assert!(t.check_grant_param("group", &RuleParam::Map(vec![])).is_err());
}

#[tokio::test]
async fn a_grant_is_checked_before_any_connection() {
    // Nothing listens there: a refusal proves no connection was needed.
    let t =
        target(with(with(base(), "admin_url", json!("postgres://a@127.0.0.1:9/x")), "timeout", json!("1s")));
    for (g, what) in [
        (grant("orders-db", "postgres", Duration::from_secs(600)), "not one of the target's groups"),
        (grant("other-db", "orders_read", Duration::from_secs(600)), "not `orders-db`"),
        (
            testkit::grant(testkit::identity(None), "orders-db", None, Duration::from_secs(600), json!({})),
            "no `group`",
        ),
    ] {
        match t.issue(&g).await {
            Err(TargetError::InvalidGrant(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    // A grant that passes the checks meets the unreachable database: retryable.
    match t.issue(&grant("orders-db", "orders_read", Duration::from_secs(600))).await {
        Err(TargetError::Upstream { retryable: true, cause }) => {
            assert!(cause.contains("PostgreSQL"), "{cause}")
        }
        other => panic!("{other:?}"),
    }
}

// ---- against the machine's PostgreSQL ----

/// A database, an admin role with `CREATEROLE` (no superuser) that is a member of the
/// owner, a group with `SELECT` on one table only, and a role prefix, all unique to one test.
struct Cluster {
    superuser: PgPool,
    tag: String,
    db: String,
    admin: String,
    owner: String,
    group: String,
}

impl Cluster {
    async fn new() -> Self {
        let superuser = PgPool::connect(SUPERUSER_URL).await.expect("the machine's PostgreSQL");
        let tag = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let c = Cluster {
            superuser,
            db: format!("{tag}_db"),
            admin: format!("{tag}_admin"),
            owner: format!("{tag}_owner"),
            group: format!("{tag}_read"),
            tag,
        };
        for s in [
            format!("CREATE DATABASE {}", c.db),
            format!("CREATE ROLE {} LOGIN CREATEROLE", c.admin),
            format!("CREATE ROLE {} NOLOGIN", c.owner),
            format!("GRANT {} TO {}", c.owner, c.admin),
            format!("CREATE ROLE {} NOLOGIN", c.group),
        ] {
            c.superuser.execute(s.as_str()).await.unwrap();
        }
        let db = c.in_db().await;
        for s in [
            format!("CREATE SCHEMA app AUTHORIZATION {}", c.owner),
            "CREATE TABLE app.orders (id int)".into(),
            "CREATE TABLE app.salaries (id int)".into(),
            format!("GRANT USAGE, CREATE ON SCHEMA app TO {}", c.group),
            format!("GRANT SELECT ON app.orders TO {}", c.group),
        ] {
            db.execute(s.as_str()).await.unwrap();
        }
        db.close().await;
        c
    }

    async fn in_db(&self) -> PgPool {
        PgPool::connect(&format!("postgres://postgres@127.0.0.1:5432/{}", self.db)).await.unwrap()
    }

    fn config(&self) -> Value {
        json!({
            "type": "postgres",
            "name": "orders-db",
            "admin_url": format!("postgres://{}@127.0.0.1:5432/{}", self.admin, self.db),
            "groups": [self.group],
            "owner": self.owner,
            "role_prefix": format!("{}_l_", self.tag),
            "sweep_batch": 2,
        })
    }

    async fn login_roles(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname::text, $1) AND rolcanlogin AND rolname::text <> $2 ORDER BY 1")
            .bind(format!("{}_", self.tag))
            .bind(&self.admin)
            .fetch_all(&self.superuser)
            .await
            .unwrap()
    }

    async fn drop_all(self) {
        let _ = self
            .superuser
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db).as_str())
            .await;
        let roles: Vec<String> =
            sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname::text, $1)")
                .bind(format!("{}_", self.tag))
                .fetch_all(&self.superuser)
                .await
                .unwrap();
        for role in roles {
            let _ = self.superuser.execute(format!("DROP ROLE \"{role}\"").as_str()).await;
        }
    }
}

fn identity(id: &str, name: Option<&str>) -> Identity {
    Identity { id: id.into(), name: name.map(str::to_string), ..testkit::identity(None) }
}

#[tokio::test]
async fn a_login_is_made_as_granted_and_marked_whatever_the_identity_holds() {
    let cluster = Cluster::new().await;
    let clock = Arc::new(ManualClock::starting_now());
    let t = config(cluster.config()).target(&context_with(Arc::clone(&clock))).unwrap();
    let nasty = "spiffe://td/it's \\ \"quoted\"; DROP ROLE postgres; -- é \0 end";
    let g = testkit::grant(
        identity(nasty, Some("x'); DROP")),
        "orders-db",
        None,
        Duration::from_secs(600),
        json!({ "group": cluster.group }),
    );
    let issued = t.issue(&g).await.unwrap();
    let creds = login(&issued);
    assert_eq!(issued.issued_token_type, token_type::POSTGRES_CREDENTIALS);
    assert_eq!(issued.access_token.expose(), creds.password.expose());
    assert_eq!(issued.expires_at, clock.now() + 600);
    assert_eq!(creds.expires_at, crate::clock::format_rfc3339(clock.now() + 600));
    assert_eq!(
        (creds.host.as_deref(), creds.port, creds.database.as_deref()),
        (Some("127.0.0.1"), Some(5432), Some(cluster.db.as_str()))
    );
    assert!(creds.username.starts_with(&format!("{}_l_x_drop_", cluster.tag)), "{}", creds.username);

    let row = sqlx::query(
        "SELECT extract(epoch FROM a.rolvaliduntil)::bigint AS until, a.rolpassword, a.rolsuper, a.rolcreaterole, a.rolinherit, \
                shobj_description(a.oid, 'pg_authid') AS comment, pg_has_role(a.oid, $2, 'MEMBER') AS member \
         FROM pg_authid a WHERE a.rolname = $1",
    )
    .bind(&creds.username)
    .bind(&cluster.group)
    .fetch_one(&cluster.superuser)
    .await
    .unwrap();
    assert_eq!(row.get::<i64, _>("until"), issued.expires_at);
    assert!(row.get::<bool, _>("member") && row.get::<bool, _>("rolinherit"));
    assert!(!row.get::<bool, _>("rolsuper") && !row.get::<bool, _>("rolcreaterole"));
    assert_eq!(
        row.get::<String, _>("comment"),
        format!(
            "tessera target=orders-db expires={} identity={}",
            creds.expires_at,
            nasty.replace('\0', "\\0")
        )
    );
    // What PostgreSQL stores is the SCRAM verifier of the password handed out.
    let stored: String = row.get("rolpassword");
    let (head, _) = stored.rsplit_once('$').unwrap();
    let salt = STANDARD.decode(head.rsplit_once(':').unwrap().1).unwrap();
    assert_eq!(stored, scram_verifier_with(creds.password.expose(), &salt, 4096).unwrap());
    assert!(cluster.login_roles().await.contains(&creds.username));
    cluster.drop_all().await;
}

#[tokio::test]
async fn the_sweep_drops_only_its_expired_logins_and_keeps_what_they_made() {
    let cluster = Cluster::new().await;
    let clock = Arc::new(ManualClock::starting_now());
    let t = config(cluster.config()).target(&context_with(Arc::clone(&clock))).unwrap();
    let issue = |name: &'static str, ttl: u64| {
        let t = t.clone();
        let group = cluster.group.clone();
        async move {
            let g = testkit::grant(
                identity(&format!("k8s://c/ns/a/sa/{name}"), Some(name)),
                "orders-db",
                None,
                Duration::from_secs(ttl),
                json!({ "group": group }),
            );
            login(&t.issue(&g).await.unwrap())
        }
    };
    let short = [issue("one", 60).await, issue("two", 60).await, issue("three", 60).await];
    let long = issue("four", 3600).await;
    // A role with the prefix but no comment of this target's, and one of another target.
    let stranger = format!("{}_l_stranger", cluster.tag);
    let other = format!("{}_l_other", cluster.tag);
    for s in [
        format!("CREATE ROLE {stranger} LOGIN VALID UNTIL '2000-01-01'"),
        format!("CREATE ROLE {other} LOGIN VALID UNTIL '2000-01-01'"),
        format!("COMMENT ON ROLE {other} IS 'tessera target=orders-db-2 expires=2000-01-01T00:00:00Z'"),
    ] {
        cluster.superuser.execute(s.as_str()).await.unwrap();
    }
    // The first login made a table, and has a session open.
    let url = format!("postgres://{}@127.0.0.1:5432/{}", short[0].username, cluster.db);
    let mut session = sqlx::PgConnection::connect(&url).await.unwrap();
    session.execute("CREATE TABLE app.made_by_login (id int)").await.unwrap();

    assert_eq!(t.sweep().await.unwrap(), SweepReport::default(), "nothing has expired yet");
    clock.advance(61);
    let first = t.sweep().await.unwrap();
    assert_eq!((first.dropped.len(), first.failed), (2, 0), "bounded by sweep_batch");
    let second = t.sweep().await.unwrap();
    assert_eq!((second.dropped.len(), second.failed), (1, 0));
    let mut dropped: Vec<String> = first.dropped.into_iter().chain(second.dropped).collect();
    dropped.sort();
    let mut expected: Vec<String> = short.iter().map(|c| c.username.clone()).collect();
    expected.sort();
    assert_eq!(dropped, expected);

    let mut left = cluster.login_roles().await;
    left.sort();
    let mut want = vec![long.username.clone(), other, stranger];
    want.sort();
    assert_eq!(left, want, "the live login and roles not this target's are kept");
    let db = cluster.in_db().await;
    let owner: String =
        sqlx::query_scalar("SELECT tableowner::text FROM pg_tables WHERE tablename = 'made_by_login'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(owner, cluster.owner, "what the login made is the owner's now");
    assert!(session.execute("SELECT 1").await.is_err(), "the expired login's session was ended");
    assert!(PgPool::connect(&url).await.is_err(), "the role is gone");
    db.close().await;
    cluster.drop_all().await;
}

#[tokio::test]
async fn groups_the_database_lacks_or_that_are_superusers_are_refused() {
    let cluster = Cluster::new().await;
    let sup = format!("{}_sup", cluster.tag);
    let missing = format!("{}_missing", cluster.tag);
    cluster.superuser.execute(format!("CREATE ROLE {sup} SUPERUSER NOLOGIN").as_str()).await.unwrap();
    let value = with(cluster.config(), "groups", json!([cluster.group, sup, missing]));
    let t = config(value).target(&context_with(Arc::new(ManualClock::starting_now()))).unwrap();
    for (group, what) in [(&sup, "superuser"), (&missing, "does not exist")] {
        match t.issue(&grant("orders-db", group, Duration::from_secs(600))).await {
            Err(TargetError::UpstreamRejected(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("{group}: {other:?}"),
        }
    }
    assert!(cluster.login_roles().await.is_empty(), "a refused login leaves no role behind");
    cluster.drop_all().await;
}
