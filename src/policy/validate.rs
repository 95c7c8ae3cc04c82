//! Turns a deserialized [`PolicyDocument`] into a runtime [`Policy`], checking every value serde
//! could not (names, globs, durations in whole seconds, percentages, state keys, the numeric
//! ranges of [`ranges`]) and collecting all problems of the document, each at the line and
//! column of the offending node.

use std::path::Path;
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::document::{
    API_VERSION, DurationText, KIND, Located, LocatedMap, Mode, PercentText, PolicyDocument,
    STUCK_KEYS,
};
use super::error::PolicyError;
use super::model::{
    CordonLaunchTemplate, CountRange, DiagnoseSettings, DrainContainerInstance, DurationRange,
    EXEMPT_TAG, Guardrails, NudgeCapacity, Origin, Percent, Policy, PolicyMode, Remediate,
    ReplaceTask, StuckLimits, Target, ranges, seconds_text,
};

/// Collects problems for one file.
struct Checker<'a> {
    file: &'a Path,
    errors: Vec<PolicyError>,
}

impl Checker<'_> {
    fn error<T>(&mut self, at: &Located<T>, field: &str, message: impl Into<String>) {
        self.errors.push(PolicyError::new(
            self.file,
            at.line,
            Some(at.column),
            field,
            message,
        ));
    }

    /// A duration in whole seconds inside `range`.
    fn duration(
        &mut self,
        at: &Located<DurationText>,
        field: &str,
        range: DurationRange,
    ) -> Option<Duration> {
        let valid = format!(
            "valid: a positive duration with a unit, in whole seconds from {} to {}, such as \
             90s, 10m or 1h 30m",
            seconds_text(range.min),
            seconds_text(range.max)
        );
        let raw = &at.value.0;
        let text = raw.text.trim();
        if raw.is_number || text.parse::<f64>().is_ok() {
            self.error(
                at,
                field,
                format!("`{text}` has no unit; a unit is required ({valid})"),
            );
            return None;
        }
        if text.starts_with('-') {
            self.error(
                at,
                field,
                format!("`{text}` is negative; a duration must be positive ({valid})"),
            );
            return None;
        }
        let problem = match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => "is zero, a duration must be positive".to_string(),
            Ok(d) if d.subsec_nanos() != 0 => {
                "has a part below one second, durations are whole seconds".to_string()
            }
            Ok(d) if d < range.min => format!("is shorter than {}", seconds_text(range.min)),
            Ok(d) if d > range.max => format!("is longer than {}", seconds_text(range.max)),
            Ok(d) => return Some(d),
            Err(e) => format!("is not a duration ({e})"),
        };
        self.error(at, field, format!("`{text}` {problem}; {valid}"));
        None
    }

    fn percent(&mut self, at: &Located<PercentText>, field: &str) -> Option<Percent> {
        const VALID: &str = "valid: a percentage string from 0% to 100%, such as 25% or 12.5%";
        let raw = &at.value.0;
        let text = raw.text.trim();
        let Some(number) = text.strip_suffix('%').filter(|_| !raw.is_number) else {
            self.error(
                at,
                field,
                format!("`{text}` is not a percentage; {VALID} (quote it in YAML and add `%`)"),
            );
            return None;
        };
        match number.trim().parse::<f64>() {
            Ok(p) if p.is_finite() && (0.0..=100.0).contains(&p) => Some(Percent(p)),
            Ok(_) => {
                self.error(at, field, format!("`{text}` is out of range; {VALID}"));
                None
            }
            Err(_) => {
                self.error(at, field, format!("`{text}` is not a percentage; {VALID}"));
                None
            }
        }
    }

    /// A whole number inside `range`.
    fn count(&mut self, at: &Located<u32>, field: &str, range: CountRange) -> Option<u32> {
        let value = at.value;
        let problem = if value < range.min {
            format!("must be at least {}", range.min)
        } else if value > range.max {
            format!("must be at most {}", range.max)
        } else {
            return Some(value);
        };
        self.error(
            at,
            field,
            format!(
                "{problem}, got {value}; valid: a whole number from {} to {}",
                range.min, range.max
            ),
        );
        None
    }

    fn globs(&mut self, patterns: &[Located<String>], field: &str) -> Option<GlobSet> {
        let mut builder = GlobSetBuilder::new();
        let mut ok = true;
        for (i, p) in patterns.iter().enumerate() {
            let field = format!("{field}[{i}]");
            if p.value.is_empty() {
                self.error(
                    p,
                    &field,
                    "empty pattern; valid: a name or glob such as `prod-*`",
                );
                ok = false;
                continue;
            }
            match Glob::new(&p.value) {
                Ok(g) => {
                    builder.add(g);
                }
                Err(e) => {
                    self.error(
                        p,
                        &field,
                        format!(
                            "invalid glob `{}`: {}; valid: a name or glob using *, ?, [abc], {{a,b}}",
                            p.value,
                            e.kind()
                        ),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        match builder.build() {
            Ok(set) => Some(set),
            Err(e) => {
                let first = &patterns[0];
                self.error(first, field, format!("invalid globs: {e}"));
                None
            }
        }
    }

    fn stuck(&mut self, stuck: &Located<LocatedMap<Located<DurationText>>>) -> StuckLimits {
        let mut limits = StuckLimits::default();
        if stuck.value.0.is_empty() {
            self.error(
                stuck,
                "spec.stuck",
                format!(
                    "no limits; at least one is required, keys: {}",
                    STUCK_KEYS.join(", ")
                ),
            );
        }
        for (key, value) in &stuck.value.0 {
            let field = format!("spec.stuck.{}", key.value);
            let slot = match key.value.as_str() {
                "PROVISIONING" => &mut limits.provisioning,
                "PENDING" => &mut limits.pending,
                "ACTIVATING" => &mut limits.activating,
                "DEACTIVATING" => &mut limits.deactivating,
                "STOPPING" => &mut limits.stopping,
                "DEPROVISIONING" => &mut limits.deprovisioning,
                "unhealthy" => &mut limits.unhealthy,
                other => {
                    let hint = match other {
                        "RUNNING" => {
                            " (a RUNNING task is never stuck in its state; use `unhealthy` for RUNNING tasks that report UNHEALTHY)"
                        }
                        "STOPPED" => " (STOPPED is final, not a state to be stuck in)",
                        _ => "",
                    };
                    self.error(
                        key,
                        &field,
                        format!(
                            "unknown lifecycle state{hint}; valid: {}",
                            STUCK_KEYS.join(", ")
                        ),
                    );
                    continue;
                }
            };
            let duration = self.duration(value, &field, ranges::STUCK_LIMIT);
            *slot = duration;
        }
        limits
    }
}

/// Whether `name` is a Kubernetes-style name (RFC 1123 label).
fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Validates one document; the policy's origin is the line where the document's mapping starts.
pub(crate) fn validate(
    file: &Path,
    doc: &Located<PolicyDocument>,
) -> Result<Policy, Vec<PolicyError>> {
    let mut c = Checker {
        file,
        errors: Vec::new(),
    };
    let d = &doc.value;

    if d.api_version.value != API_VERSION {
        c.error(
            &d.api_version,
            "apiVersion",
            format!(
                "unsupported apiVersion `{}`; valid: {API_VERSION}",
                d.api_version.value
            ),
        );
    }
    if d.kind.value != KIND {
        c.error(
            &d.kind,
            "kind",
            format!("unsupported kind `{}`; valid: {KIND}", d.kind.value),
        );
    }
    let name = &d.metadata.name;
    if !is_valid_name(&name.value) {
        c.error(
            name,
            "metadata.name",
            format!(
                "invalid name `{}`; valid: 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit",
                name.value
            ),
        );
    }

    // Target.
    let t = &d.spec.target.value;
    if t.clusters.value.is_empty() {
        c.error(
            &t.clusters,
            "spec.target.clusters",
            "empty cluster selector; valid: a non-empty list of cluster names or globs (use [\"*\"] to mean every cluster)",
        );
    }
    let clusters = c.globs(&t.clusters.value, "spec.target.clusters");
    let services = t
        .services
        .as_ref()
        .map(|s| c.globs(s, "spec.target.services"));
    let accounts = t
        .accounts
        .as_ref()
        .map(|a| c.globs(a, "spec.target.accounts"));
    let mut exclude_tags: Vec<(String, String)> = t
        .exclude
        .as_ref()
        .map(|e| {
            e.tags
                .0
                .iter()
                .map(|(k, v)| (k.value.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let exempt = (EXEMPT_TAG.0.to_owned(), EXEMPT_TAG.1.to_owned());
    if !exclude_tags.contains(&exempt) {
        exclude_tags.push(exempt);
    }

    let stuck = c.stuck(&d.spec.stuck);

    // Remediations.
    let r = &d.spec.remediate;
    let replace_task = r.replace_task.as_ref().map(|x| ReplaceTask {
        standalone: x.standalone,
    });
    let nudge_capacity = r.nudge_capacity.as_ref().and_then(|n| {
        let step = c.count(
            &n.step,
            "spec.remediate.nudgeCapacity.step",
            ranges::NUDGE_STEP,
        );
        let max_desired = c.count(
            &n.max_desired,
            "spec.remediate.nudgeCapacity.maxDesired",
            ranges::NUDGE_MAX_DESIRED,
        );
        let cooldown = c.duration(
            &n.cooldown,
            "spec.remediate.nudgeCapacity.cooldown",
            ranges::NUDGE_COOLDOWN,
        );
        Some(NudgeCapacity {
            step: step?,
            max_desired: max_desired?,
            cooldown: cooldown?,
        })
    });
    let cordon_launch_template = r.cordon_launch_template.as_ref().and_then(|x| {
        let timeout = c.duration(
            &x.registration_timeout,
            "spec.remediate.cordonLaunchTemplate.registrationTimeout",
            ranges::REGISTRATION_TIMEOUT,
        );
        let min_failed = c.count(
            &x.min_failed_instances,
            "spec.remediate.cordonLaunchTemplate.minFailedInstances",
            ranges::MIN_FAILED_INSTANCES,
        );
        Some(CordonLaunchTemplate {
            registration_timeout: timeout?,
            min_failed_instances: min_failed?,
        })
    });
    let drain_container_instance = r.drain_container_instance.as_ref().and_then(|x| {
        let agent_disconnected = c.duration(
            &x.agent_disconnected,
            "spec.remediate.drainContainerInstance.agentDisconnected",
            ranges::AGENT_DISCONNECTED,
        )?;
        Some(DrainContainerInstance { agent_disconnected })
    });

    // Guardrails.
    let g = &d.spec.guardrails;
    let defaults = Guardrails::default();
    let max_actions = g.max_actions_per_hour.as_ref().map(|n| {
        c.count(
            n,
            "spec.guardrails.maxActionsPerHour",
            ranges::MAX_ACTIONS_PER_HOUR,
        )
    });
    let max_in_flight = g
        .max_in_flight_per_service
        .as_ref()
        .map(|p| c.percent(p, "spec.guardrails.maxInFlightPerService"));
    let pause = g
        .pause_when_stuck_above
        .as_ref()
        .map(|p| c.percent(p, "spec.guardrails.pauseWhenStuckAbove"));

    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    // Every check passed, so every `Option` from a check is `Some`.
    let guardrails = Guardrails {
        max_actions_per_hour: max_actions
            .flatten()
            .unwrap_or(defaults.max_actions_per_hour),
        max_in_flight_per_service: max_in_flight
            .flatten()
            .unwrap_or(defaults.max_in_flight_per_service),
        pause_when_stuck_above: pause.flatten().unwrap_or(defaults.pause_when_stuck_above),
    };
    let (Some(clusters), Some(services), Some(accounts)) = (
        clusters,
        services.map_or(Some(None), |s| s.map(Some)),
        accounts.map_or(Some(None), |a| a.map(Some)),
    ) else {
        // Not reached: a glob that failed has been reported above.
        return Err(c.errors);
    };
    Ok(Policy {
        name: name.value.clone(),
        origin: Origin {
            file: file.to_path_buf(),
            line: doc.line,
        },
        mode: match d.spec.mode {
            Mode::Enforce => PolicyMode::Enforce,
            Mode::DryRun => PolicyMode::Audit,
        },
        target: Target {
            cluster_patterns: t.clusters.value.iter().map(|p| p.value.clone()).collect(),
            clusters,
            services,
            service_patterns: t
                .services
                .as_ref()
                .map(|s| s.iter().map(|p| p.value.clone()).collect()),
            standalone: t.standalone,
            accounts,
            account_patterns: t
                .accounts
                .as_ref()
                .map(|a| a.iter().map(|p| p.value.clone()).collect()),
            exclude_tags,
        },
        stuck,
        remediate: Remediate {
            replace_task,
            nudge_capacity,
            cordon_launch_template,
            drain_container_instance,
        },
        guardrails,
        diagnose: DiagnoseSettings {
            root_cause_reads: d
                .spec
                .diagnose
                .root_cause_reads
                .unwrap_or(DiagnoseSettings::default().root_cause_reads),
        },
    })
}
