//! `tessera aws ...`: helpers for workloads on AWS. The signing itself lives in the
//! adapters crate (`aws_sign`), so the agent can reuse it; this module only
//! gathers the ambient credentials and prints.

use anyhow::Context as _;
use aws_credential_types::provider::ProvideCredentials as _;
use clap::Subcommand;
use tessera_adapters::aws_sign::{Credentials, regional_endpoint, signed_request};
use tessera_adapters::{Clock as _, Secret, SystemClock};

/// The region signed for when neither `--region` nor the environment names one.
const FALLBACK_REGION: &str = "us-east-1";

#[derive(Debug, Subcommand)]
pub enum AwsCommand {
    /// Sign an sts:GetCallerIdentity request with the ambient AWS credentials (environment,
    /// shared config and credentials files, web identity, ECS or EC2 instance metadata) and
    /// print it as a subject token of type
    /// urn:tessera:params:oauth:token-type:aws-signed-request for an `aws_iam` source.
    #[command(
        after_help = "Example:\n  tessera aws sign-request --server-id tessera.example.com --region eu-west-1 > token"
    )]
    SignRequest {
        /// The `server_id` of the broker's `aws_iam` source; it is signed into the request.
        #[arg(long, env = "TESSERA_AWS_SERVER_ID")]
        server_id: String,
        /// The region to sign for. Default: the ambient AWS region, else us-east-1.
        #[arg(long)]
        region: Option<String>,
        /// The STS endpoint to sign for. Default: https://sts.{region}.amazonaws.com/.
        #[arg(long)]
        endpoint: Option<String>,
    },
}

pub async fn run(command: AwsCommand) -> anyhow::Result<()> {
    match command {
        AwsCommand::SignRequest { server_id, region, endpoint } => {
            sign_request(&server_id, region, endpoint).await
        }
    }
}

/// Print a signed GetCallerIdentity request, made with whatever credentials the AWS SDK's
/// default chain finds, as an `aws_iam` subject token on standard output.
async fn sign_request(
    server_id: &str,
    region: Option<String>,
    endpoint: Option<String>,
) -> anyhow::Result<()> {
    let ambient = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let provider = ambient.credentials_provider().context("no AWS credential provider is configured")?;
    let credentials = provider.provide_credentials().await.context("no AWS credentials found")?;
    let ambient_region = ambient.region().map(|r| r.as_ref().to_owned());
    let token = token(&credentials, region.or(ambient_region), endpoint, server_id, SystemClock.now())?;
    println!("{}", token.expose());
    Ok(())
}

/// The signing step, with credentials and time given.
fn token(
    credentials: &Credentials,
    region: Option<String>,
    endpoint: Option<String>,
    server_id: &str,
    now: i64,
) -> anyhow::Result<Secret<String>> {
    let region = region.unwrap_or_else(|| FALLBACK_REGION.to_owned());
    let endpoint = endpoint.unwrap_or_else(|| regional_endpoint(&region));
    Ok(signed_request(credentials, &region, &endpoint, server_id, now)?)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use clap::Parser as _;
    use serde_json::Value;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: AwsCommand,
    }

    fn decoded(token: &Secret<String>) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.expose()).unwrap()).unwrap()
    }

    fn credentials() -> Credentials {
        Credentials::new("AKIAEXAMPLE", "example-secret", None, None, "test")
    }

    #[test]
    fn sign_request_takes_server_id_region_and_endpoint() {
        let cli = Cli::try_parse_from([
            "aws",
            "sign-request",
            "--server-id",
            "tessera.example.com",
            "--region",
            "eu-west-1",
        ])
        .unwrap();
        let AwsCommand::SignRequest { server_id, region, endpoint } = cli.command;
        assert_eq!(server_id, "tessera.example.com");
        assert_eq!(region.as_deref(), Some("eu-west-1"));
        assert_eq!(endpoint, None);
    }

    #[test]
    fn the_region_picks_the_regional_endpoint_unless_one_is_given() {
        let t = token(&credentials(), None, None, "tessera.example.com", 1_700_000_000).unwrap();
        let v = decoded(&t);
        assert_eq!(v["url"], "https://sts.us-east-1.amazonaws.com/");
        assert!(
            v["headers"]["Authorization"].as_str().unwrap().contains("/20231114/us-east-1/sts/aws4_request")
        );
        assert_eq!(v["headers"]["X-Tessera-Server-Id"], "tessera.example.com");

        let t = token(&credentials(), Some("eu-west-1".into()), None, "tessera.example.com", 1_700_000_000)
            .unwrap();
        assert_eq!(decoded(&t)["url"], "https://sts.eu-west-1.amazonaws.com/");

        let t = token(
            &credentials(),
            Some("eu-west-1".into()),
            Some("https://sts.amazonaws.com/".into()),
            "tessera.example.com",
            1_700_000_000,
        )
        .unwrap();
        let v = decoded(&t);
        assert_eq!(v["url"], "https://sts.amazonaws.com/");
        assert!(v["headers"]["Authorization"].as_str().unwrap().contains("/eu-west-1/sts/"));
    }

    #[test]
    fn bad_input_is_an_error_that_names_no_secret() {
        let e =
            token(&credentials(), None, Some("https://sts.amazonaws.com/?x=1".into()), "id", 0).unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("endpoint"), "{text}");
        assert!(!text.contains("example-secret"));
    }
}
