//! Reading a launch template version's UserData: which cluster its instances join and what
//! they mount. Pure.
//!
//! EC2 keeps UserData as base64. Under it may be gzip, a MIME multi-part document (how
//! cloud-init combines a shell script with a cloud-config), a `#cloud-config` YAML document, an
//! `#include` list of URLs, or a plain script. Every text part is read; parts that only name
//! content elsewhere (`#include`, `text/x-include-url`) are noted, never fetched.

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use std::io::Read;

use base64::Engine;
use serde::Serialize;

use super::{FileSystem, RootCause};

/// A gzip UserData is read up to this many bytes (EC2 takes 16 KiB before encoding; this is
/// generous for what that inflates to).
const MAX_INFLATED: u64 = 1 << 20;

/// Why a UserData could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "camelCase", tag = "error", content = "detail")]
pub enum UserDataError {
    #[error("UserData is not valid base64: {0}")]
    Base64(String),
    #[error("UserData is gzip but does not inflate: {0}")]
    Gzip(String),
    #[error("UserData is MIME multi-part but does not parse: {0}")]
    MultiPart(String),
}

/// What `ECS_CLUSTER` the UserData gives the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "setting", content = "value")]
pub enum ClusterSetting {
    /// Not set: the agent registers with the `default` cluster.
    NotSet,
    /// Set to this cluster name (or ARN).
    Named(String),
    /// Set from something the UserData computes (`$CLUSTER`): cannot be told from the text.
    Unresolved(String),
}

/// One kind of UserData part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Part {
    ShellScript,
    CloudConfig,
    BootHook,
    /// Bottlerocket's settings (TOML).
    BottlerocketSettings,
    /// A Windows `<powershell>` script.
    PowerShell,
    /// Content named by URL (`#include`, `text/x-include-url`): noted, not fetched.
    Include,
    /// A part of another type (its MIME type), not read.
    Other(String),
}

/// A file system the UserData mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub file_system: FileSystem,
    /// What is mounted: `fs-…@tcp:/name`, `fs-…`, `host:/export`, `//server/share`; `None`
    /// when the text does not say (a variable, or only `amazon-efs-utils` installed).
    pub target: Option<String>,
    pub mount_point: Option<String>,
}

/// What one UserData says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDataReport {
    pub gzip: bool,
    pub parts: Vec<Part>,
    pub ecs_cluster: ClusterSetting,
    pub mounts: Vec<Mount>,
}

impl Default for UserDataReport {
    fn default() -> Self {
        UserDataReport {
            gzip: false,
            parts: Vec::new(),
            ecs_cluster: ClusterSetting::NotSet,
            mounts: Vec::new(),
        }
    }
}

/// Which cluster a version's instances join, compared with the cluster observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joins {
    ThisCluster,
    Other(String),
    /// No `ECS_CLUSTER`: the agent uses `default`.
    Default,
    /// The text does not tell (a computed value, or a part not fetched).
    Unknown,
}

impl UserDataReport {
    /// Which cluster the instances join, against the cluster `name` (and its `arn`).
    pub fn joins(&self, name: &str, arn: &str) -> Joins {
        match &self.ecs_cluster {
            ClusterSetting::Named(c) if c == name || c == arn => Joins::ThisCluster,
            ClusterSetting::Named(c)
                if c.starts_with("arn:") && c.ends_with(&format!("/{name}")) =>
            {
                Joins::ThisCluster
            }
            ClusterSetting::Named(c) => Joins::Other(c.clone()),
            ClusterSetting::Unresolved(_) => Joins::Unknown,
            // Content not fetched may set it.
            ClusterSetting::NotSet if self.parts.contains(&Part::Include) => Joins::Unknown,
            ClusterSetting::NotSet if name == "default" => Joins::ThisCluster,
            ClusterSetting::NotSet => Joins::Default,
        }
    }

    /// The root cause this UserData shows for a version of `template_id` in the cluster.
    pub fn root_cause(
        &self,
        template_id: &str,
        version: u32,
        cluster_name: &str,
        cluster_arn: &str,
    ) -> Option<RootCause> {
        let template_id = template_id.to_string();
        match self.joins(cluster_name, cluster_arn) {
            Joins::Other(cluster) => Some(RootCause::UserDataOtherCluster {
                template_id,
                version,
                cluster,
            }),
            Joins::Default => Some(RootCause::UserDataDefaultCluster {
                template_id,
                version,
            }),
            Joins::ThisCluster | Joins::Unknown => None,
        }
    }

    /// One line for a finding's evidence: the cluster it joins and what it mounts.
    pub fn describe(&self) -> String {
        let cluster = match &self.ecs_cluster {
            ClusterSetting::NotSet => "no ECS_CLUSTER (joins default)".to_string(),
            ClusterSetting::Named(c) => format!("ECS_CLUSTER={c}"),
            ClusterSetting::Unresolved(c) => format!("ECS_CLUSTER={c} (computed)"),
        };
        let mut out = cluster;
        for m in &self.mounts {
            out.push_str("; mounts ");
            out.push_str(m.file_system.label());
            if let Some(t) = &m.target {
                out.push(' ');
                out.push_str(t);
            }
            if let Some(p) = &m.mount_point {
                out.push_str(" at ");
                out.push_str(p);
            }
        }
        if self.parts.contains(&Part::Include) {
            out.push_str("; an #include part not fetched");
        }
        out
    }
}

/// Reads UserData as EC2 keeps it (base64).
pub fn read(base64: &str) -> Result<UserDataReport, UserDataError> {
    let compact: String = base64
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| UserDataError::Base64(e.to_string()))?;
    let mut report = UserDataReport::default();
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        report.gzip = true;
        inflate(&bytes)?
    } else {
        bytes
    };
    let mut texts = Vec::new();
    read_document(&bytes, &mut report.parts, &mut texts)?;
    let lines: Vec<String> = texts
        .iter()
        .flat_map(|t| t.lines().map(str::to_string))
        .collect();
    report.ecs_cluster = ecs_cluster(&lines);
    report.mounts = mounts(&lines);
    Ok(report)
}

fn inflate(bytes: &[u8]) -> Result<Vec<u8>, UserDataError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_INFLATED)
        .read_to_end(&mut out)
        .map_err(|e| UserDataError::Gzip(e.to_string()))?;
    Ok(out)
}

/// Splits the document into the texts to scan, noting each part's kind.
fn read_document(
    bytes: &[u8],
    parts: &mut Vec<Part>,
    texts: &mut Vec<String>,
) -> Result<(), UserDataError> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).to_ascii_lowercase();
    let is_mime = head.starts_with("content-type: multipart")
        || head.starts_with("mime-version:")
        || head.contains("\ncontent-type: multipart");
    if is_mime {
        let mail =
            mailparse::parse_mail(bytes).map_err(|e| UserDataError::MultiPart(e.to_string()))?;
        read_mime(&mail, parts, texts)
    } else {
        read_text(String::from_utf8_lossy(bytes).into_owned(), parts, texts);
        Ok(())
    }
}

fn read_mime(
    mail: &mailparse::ParsedMail<'_>,
    parts: &mut Vec<Part>,
    texts: &mut Vec<String>,
) -> Result<(), UserDataError> {
    if mail.ctype.mimetype.starts_with("multipart/") {
        for sub in &mail.subparts {
            read_mime(sub, parts, texts)?;
        }
        return Ok(());
    }
    let body = mail
        .get_body()
        .map_err(|e| UserDataError::MultiPart(e.to_string()))?;
    match mail.ctype.mimetype.as_str() {
        "text/x-shellscript" | "text/x-sh" => {
            parts.push(Part::ShellScript);
            texts.push(body);
        }
        "text/cloud-config" => {
            parts.push(Part::CloudConfig);
            texts.push(cloud_config_text(&body));
        }
        "text/cloud-boothook" => {
            parts.push(Part::BootHook);
            texts.push(body);
        }
        "text/x-include-url" | "text/x-include-once-url" => parts.push(Part::Include),
        "text/plain" => read_text(body, parts, texts),
        other => parts.push(Part::Other(other.to_string())),
    }
    Ok(())
}

/// A part with no MIME type: its first line says what it is.
fn read_text(text: String, parts: &mut Vec<Part>, texts: &mut Vec<String>) {
    let first = text
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if first.starts_with("#cloud-config") {
        parts.push(Part::CloudConfig);
        texts.push(cloud_config_text(&text));
    } else if first.starts_with("#include") {
        parts.push(Part::Include);
    } else if first.starts_with("#cloud-boothook") {
        parts.push(Part::BootHook);
        texts.push(text);
    } else if first.starts_with("[settings") {
        parts.push(Part::BottlerocketSettings);
        texts.push(text);
    } else if first.starts_with("<powershell>") {
        parts.push(Part::PowerShell);
        texts.push(text);
    } else {
        parts.push(Part::ShellScript);
        texts.push(text);
    }
}

/// The commands and files of a cloud-config, one per line: `bootcmd` and `runcmd` entries
/// (a list form joined by spaces), `write_files` contents, and `mounts` entries as fstab
/// lines. A cloud-config that is not valid YAML is scanned as text.
fn cloud_config_text(text: &str) -> String {
    let Ok(doc) = serde_saphyr::from_str::<serde_json::Value>(text) else {
        return text.to_string();
    };
    let mut out = Vec::new();
    for key in ["bootcmd", "runcmd"] {
        for entry in doc
            .get(key)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            out.push(joined(entry));
        }
    }
    for file in doc
        .get("write_files")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(content) = file.get("content").and_then(|c| c.as_str()) {
            let encoding = file.get("encoding").and_then(|e| e.as_str()).unwrap_or("");
            out.push(file_content(content, encoding));
        }
    }
    for entry in doc
        .get("mounts")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        out.push(format!("{} # fstab", joined(entry)));
    }
    for package in doc
        .get("packages")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        out.push(format!("install {}", joined(package)));
    }
    out.join("\n")
}

/// A `write_files` content as written: cloud-init takes `b64`/`base64`, and `gz+b64` (or
/// `gzip+base64`) for gzip under base64. Content that does not decode is scanned as it stands.
fn file_content(content: &str, encoding: &str) -> String {
    let encoding = encoding.to_ascii_lowercase();
    let base64 = matches!(
        encoding.as_str(),
        "b64" | "base64" | "gz+b64" | "gzip+base64" | "gz+base64" | "gzip+b64"
    );
    if !base64 {
        return content.to_string();
    }
    let compact: String = content
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) else {
        return content.to_string();
    };
    let bytes = if encoding.starts_with("gz") {
        match inflate(&bytes) {
            Ok(inflated) => inflated,
            Err(_) => return content.to_string(),
        }
    } else {
        bytes
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

fn joined(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(joined).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// The cluster the agent is told to join, the last setting winning (the agent reads its config
/// file top to bottom): `ECS_CLUSTER=` (Amazon Linux), `cluster = "..."` under
/// `[settings.ecs]` (Bottlerocket's TOML), `Initialize-ECSAgent -Cluster ...` (Windows).
/// Comments are skipped. An empty value sets nothing: `grep -q ECS_CLUSTER= ecs.config` after
/// the `echo` that names the cluster mentions the setting without changing it.
fn ecs_cluster(lines: &[String]) -> ClusterSetting {
    let mut setting = ClusterSetting::NotSet;
    let mut section = String::new();
    for line in lines {
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            continue;
        }
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            section = trimmed.to_string();
            continue;
        }
        let mut rest = line.as_str();
        while let Some(i) = rest.find("ECS_CLUSTER=") {
            let after = &rest[i.saturating_add("ECS_CLUSTER=".len())..];
            set(&mut setting, cluster_value(after));
            rest = after;
        }
        if section == "[settings.ecs]"
            && let Some(value) = trimmed
                .strip_prefix("cluster")
                .map(str::trim_start)
                .and_then(|v| v.strip_prefix('='))
        {
            set(&mut setting, cluster_value(value.trim_start()));
        }
        if trimmed.to_ascii_lowercase().contains("initialize-ecsagent") {
            let tokens: Vec<&str> = trimmed.split_whitespace().collect();
            if let Some(w) = tokens
                .windows(2)
                .find(|w| w[0].eq_ignore_ascii_case("-cluster"))
            {
                set(&mut setting, cluster_value(w[1]));
            }
        }
    }
    setting
}

/// A later value replaces the setting, unless it is empty.
fn set(setting: &mut ClusterSetting, value: ClusterSetting) {
    if value != ClusterSetting::NotSet {
        *setting = value;
    }
}

/// A cluster value as written: quotes stripped, cut at the end of the word; one computed at
/// boot (`$CLUSTER`, a backquote) is unresolved.
fn cluster_value(text: &str) -> ClusterSetting {
    let value: String = text
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '>' | ';' | '|'))
        .collect();
    if value.contains('$') || value.contains('`') {
        ClusterSetting::Unresolved(value)
    } else if value.is_empty() {
        ClusterSetting::NotSet
    } else {
        ClusterSetting::Named(value)
    }
}

const FS_TYPES: &[(&str, FileSystem)] = &[
    ("lustre", FileSystem::FsxLustre),
    ("efs", FileSystem::Efs),
    ("nfs4", FileSystem::Nfs),
    ("nfs", FileSystem::Nfs),
    ("cifs", FileSystem::Smb),
    ("smb3", FileSystem::Smb),
];

/// The file systems mounted by `mount` commands, fstab lines (echoed or from cloud-config
/// `mounts`) and systemd mount units (`What=`), plus EFS when only `amazon-efs-utils` is
/// installed.
fn mounts(lines: &[String]) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    let mut efs_utils = false;
    for line in lines {
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            continue;
        }
        efs_utils |= trimmed.contains("amazon-efs-utils");
        if let Some(mount) = mount_in(trimmed)
            && !out.contains(&mount)
        {
            out.push(mount);
        }
    }
    if efs_utils && !out.iter().any(|m| m.file_system == FileSystem::Efs) {
        out.push(Mount {
            file_system: FileSystem::Efs,
            target: None,
            mount_point: None,
        });
    }
    out
}

fn mount_in(line: &str) -> Option<Mount> {
    let tokens: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .filter(|t| !t.is_empty())
        .collect();
    if let Some(what) = line.trim().strip_prefix("What=") {
        return Some(Mount {
            file_system: target_kind(what, None),
            target: Some(what.trim().to_string()),
            mount_point: None,
        });
    }
    let is_mount = tokens
        .iter()
        .any(|t| *t == "mount" || t.starts_with("mount."));
    let is_fstab = line.contains("/etc/fstab") || line.ends_with("# fstab");
    if !is_mount && !is_fstab {
        return None;
    }
    // The type after `-t`, or in an fstab line the field after the mount point.
    let mut fs_type = tokens
        .windows(2)
        .find(|w| w[0] == "-t")
        .map(|w| w[1].to_ascii_lowercase());
    if fs_type.is_none() {
        fs_type = tokens
            .iter()
            .map(|t| t.to_ascii_lowercase())
            .find(|t| FS_TYPES.iter().any(|(name, _)| t == name));
    }
    let target_at = tokens.iter().position(|t| is_target(t));
    let target = target_at.map(|i| tokens[i].to_string());
    let mount_point = target_at
        .and_then(|i| tokens.get(i.saturating_add(1)))
        .filter(|t| t.starts_with('/'))
        .map(|t| t.to_string());
    if target.is_none() && fs_type.is_none() {
        return None;
    }
    let kind = match &target {
        Some(t) => target_kind(t, fs_type.as_deref()),
        None => type_kind(fs_type.as_deref()?)?,
    };
    Some(Mount {
        file_system: kind,
        target,
        mount_point,
    })
}

fn is_target(token: &str) -> bool {
    token.contains("@tcp:")
        || token.starts_with("//")
        || (token.starts_with("fs-") && token.len() > 3)
        || (token.contains(":/") && !token.contains("://") && !token.starts_with('/'))
}

fn target_kind(target: &str, fs_type: Option<&str>) -> FileSystem {
    let lower = target.to_ascii_lowercase();
    if lower.contains("@tcp:") || lower.contains(".fsx.") {
        FileSystem::FsxLustre
    } else if lower.starts_with("fs-") || lower.contains(".efs.") {
        FileSystem::Efs
    } else if lower.starts_with("//") {
        FileSystem::Smb
    } else {
        fs_type.and_then(type_kind).unwrap_or(FileSystem::Nfs)
    }
}

fn type_kind(fs_type: &str) -> Option<FileSystem> {
    FS_TYPES
        .iter()
        .find(|(name, _)| fs_type == *name)
        .map(|(_, kind)| *kind)
}
