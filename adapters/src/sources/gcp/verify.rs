//! Verified Google ID token claims to the normalized identity.
//!
//! A metadata-server ID token requested with `format=full` (Google Cloud docs,
//! "Verifying the identity of instances", "Token format") carries:
//!
//! ```json
//! { "iss": "https://accounts.google.com", "sub": "107517467455664443765",
//!   "azp": "107517467455664443765", "aud": "https://tessera.example.com",
//!   "email": "api@payments-prod.iam.gserviceaccount.com", "email_verified": true,
//!   "iat": 1700000000, "exp": 1700003600,
//!   "google": { "compute_engine": {
//!     "project_id": "payments-prod", "project_number": 739419398126,
//!     "zone": "europe-west1-b", "instance_id": "6835582326887656987",
//!     "instance_name": "api-1", "instance_creation_timestamp": 1699990000 } } }
//! ```
//!
//! `format=standard` leaves out `google`; Cloud Run and Cloud Functions send no
//! `compute_engine`. `sub` is the service account's unique id.

use serde_json::Value;

use super::KIND;
use crate::identity::Identity;
use crate::jwt::attributes::flatten_claims;
use crate::jwt::{ClaimsMapper, VerifiedClaims, identity_base};
use crate::source::SourceError;

/// The allow-lists.
#[derive(Debug, Clone)]
pub struct GcpClaims {
    /// Project ids or numbers.
    pub(super) projects: Vec<String>,
    /// Emails (lower-cased) or unique ids.
    pub(super) service_accounts: Vec<String>,
}

/// The project a service account belongs to, read from its email: user-managed
/// (`name@PROJECT.iam.gserviceaccount.com`), App Engine default
/// (`PROJECT@appspot.gserviceaccount.com`), Compute Engine default
/// (`NUMBER-compute@developer.gserviceaccount.com`).
pub(super) fn home_project(email: &str) -> Option<&str> {
    let (local, domain) = email.rsplit_once('@')?;
    let project = if let Some(project) = domain.strip_suffix(".iam.gserviceaccount.com") {
        project
    } else if domain == "appspot.gserviceaccount.com" {
        local
    } else if domain == "developer.gserviceaccount.com" {
        local.strip_suffix("-compute")?
    } else {
        return None;
    };
    (!project.is_empty()).then_some(project)
}

impl ClaimsMapper for GcpClaims {
    const KIND: &'static str = KIND;

    /// The subject is the service account's unique id, which does not name it: the id
    /// (`gcp://sa/{email}`) needs the email.
    fn sketch(&self, _identity: Identity) -> Result<Identity, String> {
        Err("a GCP subject is the service account's unique id, which does not name it: give `id: gcp://sa/EMAIL` and `name: EMAIL`".into())
    }

    /// `id = gcp://sa/{email}`.
    fn identity(&self, source: &str, claims: &VerifiedClaims) -> Result<Identity, SourceError> {
        let unique_id = claims.required_str("sub")?;
        // The email names the workload; Google vouches for it only with
        // `email_verified: true` (OpenID Connect docs, "An ID token's payload").
        let email = claims.required_str("email")?;
        match claims.get("email_verified") {
            Some(Value::Bool(true)) => {}
            None => return Err(SourceError::MissingClaim("email_verified")),
            Some(_) => return Err(SourceError::InvalidClaim("email_verified")),
        }
        let compute = match claims.get("google.compute_engine") {
            None | Some(Value::Null) => None,
            Some(Value::Object(compute)) => Some(compute),
            Some(_) => return Err(SourceError::InvalidClaim("google.compute_engine")),
        };
        let text = |name: &str| -> Option<String> {
            match compute?.get(name)? {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let project_id = text("project_id");
        let project_number = text("project_number");
        let home = home_project(email);

        let by_account =
            self.service_accounts.iter().any(|sa| sa == unique_id || sa.eq_ignore_ascii_case(email));
        let candidates = [project_id.as_deref(), project_number.as_deref(), home];
        let by_project = self.projects.iter().any(|p| candidates.contains(&Some(p.as_str())));
        if !by_account && !by_project {
            return Err(SourceError::Policy("service account and project are not on the allow-lists".into()));
        }

        let mut identity =
            identity_base(KIND, source, claims, format!("gcp://sa/{email}"), unique_id.to_owned());
        identity.tenant = project_id.clone().or_else(|| home.map(str::to_owned));
        identity.name = Some(email.to_owned());
        identity.instance = text("instance_id");
        identity.region = text("zone");
        if let Some(compute) = compute {
            flatten_claims(&mut identity, KIND, compute, &[]);
        }
        let attrs = &mut identity.attributes;
        attrs.insert("gcp.email".into(), email.to_owned());
        attrs.insert("gcp.unique_id".into(), unique_id.to_owned());
        if let Some(azp) = claims.text("azp") {
            attrs.insert("gcp.azp".into(), azp);
        }
        if let Some(home) = home {
            attrs.insert("gcp.service_account_project".into(), home.to_owned());
        }
        Ok(identity)
    }
}
