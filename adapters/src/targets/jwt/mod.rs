use std::sync::Arc;
use crate::registry::{BuildContext, BuildError, BuildTarget};
use crate::target::CredentialTarget;
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtTargetConfig { pub name: String }
impl BuildTarget for JwtTargetConfig {
    fn name(&self) -> &str { &self.name }
    fn build(&self, _cx: &BuildContext) -> Result<Arc<dyn CredentialTarget>, BuildError> { Err(BuildError::new("in progress")) }
}
