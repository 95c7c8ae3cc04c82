//! Connecting to one place of `[[targets]]` (`src/targets.rs`): the standard AWS chain in the
//! place's Region, and for a role, credentials from aws-config's assume-role provider (with
//! the target's external id and session name, refreshed by the provider before they expire).
//! Each place gets its own clients and its own API budget: AWS throttles per account and
//! Region.

use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_ecs::config::Region;

use super::{AwsCloud, AwsSettings, retry_config, timeout_config};
use crate::cloud::budget::ApiBudget;
use crate::targets::{AccountRef, Place, PlannedPlace};

/// A connected place: its account and Region, and its clients.
pub struct Connected {
    pub place: Place,
    pub cloud: AwsCloud,
}

/// Connects `planned` from the standard AWS chain (environment, profile, task role): resolves
/// its Region and credentials (assuming the role, if any, once now so that a role that cannot
/// be assumed is found at start) and its account id. The error is one line, naming the target.
pub async fn connect(
    planned: &PlannedPlace,
    settings: &AwsSettings,
    budget: Arc<ApiBudget>,
) -> Result<Connected, String> {
    let ambient = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeout_config(settings))
        .retry_config(retry_config(settings))
        .load()
        .await;
    connect_from(ambient, planned, settings, budget).await
}

/// [`connect`] from an explicit ambient configuration (tests, emulators): its credentials are
/// the ones the role is assumed with.
pub async fn connect_from(
    ambient: aws_config::SdkConfig,
    planned: &PlannedPlace,
    settings: &AwsSettings,
    budget: Arc<ApiBudget>,
) -> Result<Connected, String> {
    // Without `[[targets]]` the one place needs no name in its errors.
    let label = match planned.target {
        Some(_) => format!("{}: ", planned.label()),
        None => String::new(),
    };
    let mut sdk_config = match &planned.region {
        Some(region) => ambient
            .into_builder()
            .region(Region::new(region.clone()))
            .build(),
        None => ambient,
    };
    if let Some(url) = &settings.endpoint_url {
        // The assume-role provider's STS client too.
        sdk_config = sdk_config.into_builder().endpoint_url(url).build();
    }
    let region = sdk_config
        .region()
        .map(|r| r.as_ref().to_string())
        .ok_or_else(|| format!("{label}{}", super::AwsSetupError::NoRegion))?;
    if let Some(role) = &planned.role_arn {
        let mut provider = AssumeRoleProvider::builder(role)
            .session_name(&planned.session_name)
            .region(Region::new(region.clone()))
            .configure(&sdk_config);
        if let Some(id) = &planned.external_id {
            provider = provider.external_id(id);
        }
        let provider = provider.build().await;
        sdk_config = sdk_config
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build();
    }
    let cloud = AwsCloud::from_conf(&sdk_config, settings)
        .map_err(|e| format!("{label}{e}"))?
        .with_budget(budget);
    if let Err(e) = cloud.check_credentials().await {
        return Err(match &planned.role_arn {
            Some(role) => format!("{label}cannot assume {role}: {e}"),
            None => format!("{label}{e}"),
        });
    }
    let account = match &planned.account {
        AccountRef::Id(id) => id.clone(),
        AccountRef::Ambient => ambient_account(&sdk_config, settings, &planned.label()).await,
    };
    Ok(Connected {
        place: Place {
            account,
            account_name: planned.name.clone(),
            region,
        },
        cloud,
    })
}

/// The ambient credentials' account id (STS GetCallerIdentity, which needs no permission);
/// empty, with a warning, when STS cannot be reached (a VPC without an STS endpoint): the
/// controller works, its records and metrics then carry no account.
async fn ambient_account(
    sdk_config: &aws_config::SdkConfig,
    settings: &AwsSettings,
    label: &str,
) -> String {
    let mut config = aws_sdk_sts::config::Builder::from(sdk_config);
    if let Some(url) = &settings.endpoint_url {
        config = config.endpoint_url(url);
    }
    let sts = aws_sdk_sts::Client::from_conf(config.build());
    match sts.get_caller_identity().send().await {
        Ok(identity) => identity.account().unwrap_or_default().to_string(),
        Err(e) => {
            tracing::warn!(
                target_place = %label,
                error = %aws_sdk_sts::error::DisplayErrorContext(&e),
                "cannot read the account id (sts:GetCallerIdentity); audit records and metrics \
                 will name no account"
            );
            String::new()
        }
    }
}
