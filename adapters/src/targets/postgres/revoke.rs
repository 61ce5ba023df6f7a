//! Direct revocation: every login this target made for a revoked identity is dropped at
//! once, its sessions ended, what it owns handed to the owner, as the sweep drops expired
//! ones. Logins are found by the comment each carries (`... identity=<id>`), so a login
//! made by any replica is found.

use super::issue::{PostgresTarget, db_error};
use super::sweep::drop_login;
use crate::target::{RevokeReport, TargetError};

/// Most logins looked up for one identity in one call.
const MAX_LOGINS: i64 = 1000;

impl PostgresTarget {
    /// Drop every login of these identities that this target made and that still exists,
    /// expired or not. Idempotent: a login another replica dropped first is skipped.
    pub async fn drop_identities(&self, identities: &[String]) -> Result<RevokeReport, TargetError> {
        let inner = &self.inner;
        let s = &inner.settings;
        let mut report = RevokeReport::default();
        for identity in identities {
            // As `create_login` writes it in the comment.
            let written = format!(" identity={}", identity.replace('\0', "\\0"));
            let logins: Vec<(String,)> = inner
                .bounded(async {
                    sqlx::query_as(
                        "SELECT r.rolname::text FROM pg_catalog.pg_roles r, \
                           LATERAL (SELECT coalesce(pg_catalog.shobj_description(r.oid, 'pg_authid'), '') AS c) d \
                         WHERE starts_with(r.rolname::text, $1) AND starts_with(d.c, $2) \
                           AND right(d.c, char_length($3)) = $3 \
                         ORDER BY r.rolname LIMIT $4",
                    )
                    .bind(&s.role_prefix)
                    .bind(inner.marker())
                    .bind(&written)
                    .bind(MAX_LOGINS)
                    .fetch_all(inner.pool())
                    .await
                    .map_err(|e| db_error(&e, "listing the identity's logins"))
                })
                .await?;
            for (role,) in logins {
                match inner.bounded(drop_login(inner, &role, true)).await {
                    Ok(true) => {
                        tracing::warn!(target_name = %s.base.name, role = %role, "postgres login dropped: revoked");
                        report.revoked.push(role);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(target_name = %s.base.name, role = %role, code = e.code(), error = %e, "revoked postgres login not dropped");
                        report.failed += 1;
                    }
                }
            }
        }
        Ok(report)
    }
}
