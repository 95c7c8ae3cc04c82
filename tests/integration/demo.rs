//! The demo tells the truth: its narration and summary are the audit trail's records, its
//! summary does not contradict itself, and its comparison shows what the controller changed.

use std::time::{Duration, SystemTime};

use ecs_reconciler::audit::{AuditRecord, AuditSink, Outcome};
use ecs_reconciler::cloud::sim::{build_scenario, scenario_names};
use ecs_reconciler::demo::{DemoSummary, Measure, list, run_demo, scenario_policies};
use ecs_reconciler::diagnose::short;
use ecs_reconciler::domain::TaskStatus;

/// One demo run: its summary, its text and the records its trail received.
struct Told {
    summary: DemoSummary,
    text: String,
    records: Vec<AuditRecord>,
}

async fn demo(scenario: &str, dry_run: bool) -> Told {
    let audit = AuditSink::memory();
    let mut out = Vec::new();
    let summary = run_demo(
        scenario,
        dry_run,
        audit.clone(),
        Duration::from_secs(45 * 60),
        &mut out,
    )
    .await
    .unwrap_or_else(|e| panic!("{scenario}: {e}"));
    Told {
        summary,
        text: String::from_utf8(out).unwrap(),
        records: audit.records(),
    }
}

/// Every scenario but `scale` (10,000 tasks: about a second enforced, far longer in a dry
/// run, which runs to the horizon).
fn scenarios() -> impl Iterator<Item = &'static str> {
    scenario_names().iter().copied().filter(|s| *s != "scale")
}

fn summary_line(told: &Told) -> &str {
    told.text
        .lines()
        .find(|l| l.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary:\n{}", told.text))
}

fn audited(records: &[AuditRecord], pick: fn(&Outcome) -> bool) -> usize {
    records.iter().filter(|r| pick(&r.outcome)).count()
}

#[tokio::test(start_paused = true)]
async fn every_scenario_narrates_exactly_the_actions_its_audit_trail_records() {
    let runs = scenario_names()
        .iter()
        .map(|s| (*s, false))
        .chain(scenarios().map(|s| (s, true)));
    for (scenario, dry_run) in runs {
        let told = demo(scenario, dry_run).await;
        let (s, records) = (&told.summary, &told.records);
        let done = audited(records, |o| *o == Outcome::Done);
        let failed = audited(records, |o| matches!(o, Outcome::Failed(_)));
        let planned = audited(records, |o| *o == Outcome::Planned);
        let skipped = audited(records, |o| matches!(o, Outcome::Skipped(_)));
        let lines = |arrow: &str| told.text.lines().filter(|l| l.contains(arrow)).count();
        let ctx = format!("{scenario} (dry run {dry_run}):\n{}", told.text);
        assert_eq!(lines("→ done"), done, "{ctx}");
        assert_eq!(lines("→ failed"), failed, "{ctx}");
        assert_eq!(lines("→ planned"), planned, "{ctx}");
        assert_eq!(s.actions_narrated, done + failed + planned, "{ctx}");
        assert_eq!(
            (
                s.actions_taken,
                s.actions_failed,
                s.actions_planned,
                s.held_back
            ),
            (done, failed, planned, skipped),
            "{ctx}"
        );
        let line = summary_line(&told);
        let acted = match (planned, done) {
            (0, 0) => "no action taken".to_string(),
            (0, 1) => "1 action taken".to_string(),
            (0, n) => format!("{n} actions taken"),
            (1, _) => "1 action planned".to_string(),
            (n, _) => format!("{n} actions planned"),
        };
        assert!(line.contains(&acted), "{acted}: {ctx}");
        if dry_run {
            assert_eq!(done + failed, 0, "{ctx}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn capacity_short_narrates_both_nudges() {
    let told = demo("capacity-short", false).await;
    let nudges: Vec<&str> = told
        .text
        .lines()
        .filter(|l| l.contains("nudgeCapacity demo-asg → done"))
        .collect();
    assert_eq!(nudges.len(), 2, "{}", told.text);
    assert!(nudges[1].ends_with("desired capacity 3"), "{}", nudges[1]);
    assert!(
        summary_line(&told).contains("2 actions taken"),
        "{}",
        told.text
    );
}

#[tokio::test(start_paused = true)]
async fn no_summary_contradicts_itself() {
    for dry_run in [false, true] {
        for scenario in scenarios() {
            let told = demo(scenario, dry_run).await;
            let s = &told.summary;
            let line = summary_line(&told);
            let ctx = format!("{scenario} (dry run {dry_run}): {line}");
            assert!(s.recovered <= s.stuck_found, "{ctx}");
            if s.stuck_found == 0 {
                assert!(line.contains("nothing was stuck"), "{ctx}");
                assert!(!line.contains("recovered"), "{ctx}");
                assert!(!line.contains("still stuck"), "{ctx}");
                continue;
            }
            assert!(!line.contains("nothing was stuck"), "{ctx}");
            match s.time_to_recovery {
                Some(_) => {
                    assert_eq!(s.recovered, s.stuck_found, "{ctx}");
                    assert!(!line.contains("still stuck"), "{ctx}");
                    assert!(line.contains("recovered after"), "{ctx}");
                }
                None => {
                    assert!(s.recovered < s.stuck_found, "{ctx}");
                    let still = format!("{} still stuck", s.stuck_found - s.recovered);
                    assert!(line.contains(&still), "{ctx}");
                    assert!(!line.contains("recovered after"), "{ctx}");
                }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_comparison_shows_what_the_controller_changed_where_it_acted() {
    for scenario in scenarios() {
        let told = demo(scenario, false).await;
        let s = &told.summary;
        assert!(!s.compared.is_empty(), "{scenario}: nothing compared");
        let line = told
            .text
            .lines()
            .find(|l| l.starts_with("without the controller"))
            .unwrap_or_else(|| panic!("{scenario}: no comparison:\n{}", told.text));
        for c in &s.compared {
            assert!(
                line.contains(&format!("against {} with it", c.with)),
                "{scenario}: {line}"
            );
        }
        if s.actions_taken > 0 {
            assert!(
                s.compared.iter().any(|c| c.with < c.without),
                "{scenario}: the controller acted, the comparison shows no difference: {line}"
            );
        }
    }
    let told = demo("agent-disconnected", false).await;
    let measures: Vec<Measure> = told.summary.compared.iter().map(|c| c.measure).collect();
    assert_eq!(
        measures,
        [Measure::Stopping, Measure::DisconnectedActive],
        "the STOPPING hang is what agent-disconnected is about"
    );
    let told = demo("unhealthy", false).await;
    assert_eq!(told.summary.compared[0].measure, Measure::Unhealthy);
    assert_eq!(
        (
            told.summary.compared[0].with,
            told.summary.compared[0].without
        ),
        (0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn the_drain_line_names_the_ec2_instance_the_time_disconnected_and_the_limit() {
    let told = demo("agent-disconnected", false).await;
    let drain = told
        .text
        .lines()
        .find(|l| l.contains("drainContainerInstance EC2 instance i-"))
        .unwrap_or_else(|| panic!("no drain line naming the EC2 instance:\n{}", told.text));
    let record = told
        .records
        .iter()
        .find(|r| r.action == "drainContainerInstance" && r.outcome == Outcome::Done)
        .expect("a drain in the trail");
    let ec2 = &record.evidence["ec2InstanceId"];
    assert!(drain.contains(&format!("EC2 instance {ec2} ")), "{drain}");
    assert!(
        drain.contains("why: container agent disconnected for "),
        "{drain}"
    );
    assert!(drain.contains("limit 15m"), "{drain}");
    assert!(
        drain.contains(&format!(
            "disconnected since {}",
            record.evidence["disconnectedSince"]
        )),
        "{drain}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_launch_template_is_shown_by_name_with_its_id() {
    let mut checked = 0;
    for scenario in scenarios() {
        let (_, info) = build_scenario(scenario, SystemTime::now()).unwrap();
        if info.launch_templates.is_empty() {
            continue;
        }
        for dry_run in [false, true] {
            let told = demo(scenario, dry_run).await;
            let ids = told.text.matches("lt-").count();
            let ctx = format!("{scenario} (dry run {dry_run}):\n{}", told.text);
            let named: usize = info
                .launch_templates
                .iter()
                .map(|(name, _)| told.text.matches(&format!("{name} (lt-")).count())
                .sum();
            assert_eq!(named, ids, "every id comes with its name: {ctx}");
            for (name, id) in &info.launch_templates {
                if let Some(first) = told.text.find(name.as_str()) {
                    let with_id = format!("{name} ({id})");
                    assert!(told.text[first..].starts_with(&with_id), "{ctx}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 2, "no scenario with a launch template");
}

/// Words the demo writes after a count of one, in its summary and comparison lines.
#[tokio::test(start_paused = true)]
async fn a_count_of_one_takes_the_singular() {
    for scenario in scenarios() {
        let told = demo(scenario, false).await;
        let own = told
            .text
            .lines()
            .filter(|l| l.starts_with("summary: ") || l.starts_with("without the controller"));
        for line in own {
            let words: Vec<&str> = line.split([' ', ',', ';', ':', '(']).collect();
            for pair in words.windows(2) {
                assert!(
                    !(pair[0] == "1" && pair[1].ends_with('s')),
                    "{scenario}: \"1 {}\" in {line}",
                    pair[1]
                );
            }
        }
    }
}

#[test]
fn the_scenario_list_is_aligned_from_its_first_row() {
    let list = list();
    let width = scenario_names().iter().map(|n| n.len()).max().unwrap();
    let rows: Vec<&str> = list.lines().collect();
    assert_eq!(rows.len(), scenario_names().len(), "{list}");
    for (row, name) in rows.iter().zip(scenario_names()) {
        let (head, description) = row.split_at(width + 2);
        assert_eq!(head.trim_end(), *name, "{list}");
        assert!(
            !description.starts_with(' ') && !description.is_empty(),
            "{list}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_header_states_the_policy_the_run_is_under() {
    let told = demo("agent-disconnected", false).await;
    let policy = &scenario_policies().unwrap().policies[0];
    let header = told
        .text
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with(&format!("policy {}:", policy.name))
        })
        .unwrap_or_else(|| panic!("no policy line:\n{}", told.text));
    for status in TaskStatus::ALL {
        if let Some(limit) = policy.stuck.limit_for(status) {
            let stated = format!("{status} {}", short(limit));
            assert!(header.contains(&stated), "{stated}: {header}");
        }
    }
    let drain = policy.remediate.drain_container_instance.as_ref().unwrap();
    let stated = format!("agent disconnected {}", short(drain.agent_disconnected));
    assert!(header.contains(&stated), "{stated}: {header}");
    let stated = format!(
        "at most {} actions an hour",
        policy.guardrails.max_actions_per_hour
    );
    assert!(header.contains(&stated), "{stated}: {header}");
}
