//! Recordings (`run --record`): deltas that rebuild each picture exactly, redaction, torn
//! tails, the format version, and a recorder whose disk fails while reconciling goes on.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ecs_reconciler::audit::AuditSink;
use ecs_reconciler::causes::{Clues, Reading};
use ecs_reconciler::cloud::sim::build_scenario;
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::demo::scenario_policies;
use ecs_reconciler::domain::{ClusterSnapshot, LaunchTemplateVersion, TaskStatus};
use ecs_reconciler::record::read::{ReadError, read};
use ecs_reconciler::record::recorder::{PAUSE, Recorder};
use ecs_reconciler::record::redact::REDACTED;
use ecs_reconciler::record::segments::{Limits, SegmentWriter};
use ecs_reconciler::record::{Entry, delta};
use ecs_reconciler::telemetry::Telemetry;
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::support::fixtures::{TaskBuilder, now, snapshot};

const LIMITS: Limits = Limits {
    max_bytes: 1 << 30,
    max_age: Duration::from_secs(7 * 24 * 3600),
};

fn picture(ids: &[u32], status_of: impl Fn(u32) -> TaskStatus) -> ClusterSnapshot {
    let tasks = ids
        .iter()
        .map(|&id| {
            TaskBuilder::service("web", &format!("t{id}"))
                .status(status_of(id))
                .build()
        })
        .collect();
    snapshot(tasks, &[("web", 4)])
}

proptest! {
    /// Whenever a delta is given, applying it to the previous picture gives the next one
    /// exactly; and it is always given when the kept tasks keep their order (removals, changes
    /// and new tasks at the end: what ListTasks and the cache produce).
    #[test]
    fn a_delta_rebuilds_the_next_picture_exactly(
        prev_ids in proptest::collection::btree_set(0u32..40, 0..20),
        removed in proptest::collection::btree_set(0u32..40, 0..8),
        changed in proptest::collection::btree_set(0u32..40, 0..8),
        added in proptest::collection::btree_set(40u32..60, 0..6),
        swap in proptest::option::of((0usize..20, 0usize..20)),
    ) {
        let prev_ids: Vec<u32> = prev_ids.into_iter().collect();
        let mut next_ids: Vec<u32> =
            prev_ids.iter().copied().filter(|i| !removed.contains(i)).collect();
        next_ids.extend(added.iter().copied());
        let mut reordered = false;
        if let Some((a, b)) = swap.filter(|(a, b)| a != b && *a < next_ids.len() && *b < next_ids.len()) {
            next_ids.swap(a, b);
            reordered = true;
        }
        let prev = picture(&prev_ids, |_| TaskStatus::Running);
        let mut next = picture(&next_ids, |id| {
            if changed.contains(&id) { TaskStatus::Deactivating } else { TaskStatus::Running }
        });
        next.observed_at = prev.observed_at + Duration::from_secs(30);
        match delta::diff(&prev, &next) {
            Some(d) => {
                let mut rebuilt = prev.clone();
                delta::apply(&mut rebuilt, d);
                prop_assert_eq!(rebuilt, next);
            }
            None => prop_assert!(reordered, "a delta is refused only for reordered tasks"),
        }
    }
}

const ENV_SECRET: &str = "s3cr3t-env-value";
const COMMAND_SECRET: &str = "--token=s3cr3t-in-command";
const USER_DATA_SECRET: &str = "IyEvYmluL2Jhc2gKZXhwb3J0IERCX1BBU1NXT1JEPXMzY3IzdA==";

/// A cluster with a standalone task started with secrets in its overrides.
fn picture_with_secrets() -> ClusterSnapshot {
    let mut task = TaskBuilder::standalone("job1").build();
    let mut overrides = (*task.overrides).clone();
    overrides.containers[0].environment[0].value = ENV_SECRET.into();
    overrides.containers[0].command = Some(vec!["run".into(), COMMAND_SECRET.into()]);
    task.overrides = overrides.into();
    let web = TaskBuilder::service("web", "w1").build();
    snapshot(vec![task, web], &[("web", 1)])
}

fn clues_with_user_data() -> Clues {
    let mut clues = Clues::default();
    clues.versions.insert(
        ("lt-0abc".into(), 3),
        Reading::Read {
            value: LaunchTemplateVersion {
                template_id: "lt-0abc".into(),
                version: 3,
                user_data: Some(USER_DATA_SECRET.into()),
                instance_profile: None,
                instance_type: Some("m5.large".into()),
                image_id: None,
            },
        },
    );
    clues
}

/// Every byte of every segment, decompressed.
fn decompressed(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let file = std::fs::File::open(entry.unwrap().path()).unwrap();
        let mut text = String::new();
        let _ = flate2::read::GzDecoder::new(file).read_to_string(&mut text);
        all.push_str(&text);
    }
    all
}

fn entries(dir: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    read(dir, |e, _| {
        out.push(e);
        Ok(())
    })
    .expect("the recording reads");
    out
}

#[test]
fn a_recording_keeps_no_override_value_command_argument_or_user_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = SegmentWriter::open(dir.path(), LIMITS).unwrap();
    let first = Arc::new(picture_with_secrets());
    writer
        .observation("set-1", &first, &clues_with_user_data())
        .unwrap();
    // The next picture changes the task with secrets, so it is in the delta too.
    let mut second = picture_with_secrets();
    second.observed_at += Duration::from_secs(30);
    second.tasks[0].last_status = TaskStatus::Deprovisioning;
    writer
        .observation("set-1", &Arc::new(second), &clues_with_user_data())
        .unwrap();
    writer.close().unwrap();

    let text = decompressed(dir.path());
    for secret in [ENV_SECRET, "s3cr3t-in-command", USER_DATA_SECRET] {
        assert!(!text.contains(secret), "{secret} reached the disk: {text}");
    }
    let kinds: Vec<&str> = entries(dir.path())
        .iter()
        .map(|e| match e {
            Entry::Header { .. } => "header",
            Entry::Full { .. } => "full",
            Entry::Delta { .. } => "delta",
            Entry::Clues { .. } => "clues",
            Entry::Action(_) => "action",
        })
        .collect();
    assert_eq!(kinds, ["header", "clues", "full", "delta"]);
    let Some(Entry::Full { snapshot, .. }) = entries(dir.path()).into_iter().nth(2) else {
        panic!("a full snapshot third");
    };
    let container = &snapshot.tasks[0].overrides.containers[0];
    assert_eq!(container.environment[0].name, "MODE", "names are kept");
    assert_eq!(container.environment[0].value, REDACTED);
    assert_eq!(
        container.command.as_deref(),
        Some(&[REDACTED.to_string(), REDACTED.to_string()][..])
    );
}

/// A recording of `n` observations of a 50-task cluster, one changed task each.
fn recording(dir: &Path, n: usize) {
    let mut writer = SegmentWriter::open(dir, LIMITS).unwrap();
    let ids: Vec<u32> = (0..50).collect();
    for i in 0..n {
        let mut p = picture(&ids, |id| {
            if id as usize == i % 50 {
                TaskStatus::Pending
            } else {
                TaskStatus::Running
            }
        });
        p.observed_at = now() + Duration::from_secs(30 * i as u64);
        writer
            .observation("set-1", &Arc::new(p), &Clues::default())
            .unwrap();
    }
    writer.close().unwrap();
}

#[test]
fn a_segment_cut_anywhere_reads_every_whole_record_before_the_cut_and_reports_the_tear() {
    let dir = tempfile::tempdir().unwrap();
    recording(dir.path(), 40);
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let bytes = std::fs::read(segment.path()).unwrap();
    let whole = entries(dir.path()).len();
    assert_eq!(whole, 41, "the header and 40 observations");

    let cut_dir = tempfile::tempdir().unwrap();
    let cut_path = cut_dir.path().join(segment.file_name());
    let mut last = 0;
    let step = (bytes.len() / 60).max(1);
    for cut in (0..bytes.len()).step_by(step).chain([bytes.len() - 1]) {
        std::fs::write(&cut_path, &bytes[..cut]).unwrap();
        let mut seen = 0;
        let summary = read(cut_dir.path(), |_, _| {
            seen += 1;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("cut at {cut} of {}: {e}", bytes.len()));
        assert_eq!(summary.torn.len(), 1, "cut at {cut}: the tear is reported");
        assert!(
            seen >= last,
            "cut at {cut}: a longer file never reads fewer records"
        );
        if cut <= bytes.len() / 2 {
            assert!(seen < whole, "cut at {cut}: what is past the cut is lost");
        }
        last = seen;
    }
    assert_eq!(last, whole, "a cut in the gzip trailer keeps every record");
}

#[test]
fn a_recording_of_an_unknown_format_version_is_refused_naming_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec-000001-1800000000.jsonl.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(
        br#"{"kind":"header","format":"ecs-reconciler-recording","version":7,"started":{"secs_since_epoch":1800000000,"nanos_since_epoch":0}}
"#,
    )
    .unwrap();
    gz.finish().unwrap();
    let err = read(dir.path(), |_, _| Ok(())).unwrap_err();
    assert!(
        matches!(err, ReadError::UnknownVersion { version: 7, .. }),
        "{err}"
    );
    let line = err.to_string();
    assert!(line.contains("format version 7"), "{line}");
    assert!(line.contains("rec-000001-1800000000.jsonl.gz:1"), "{line}");
    assert!(!line.contains('\n'));
}

/// Counts what the recorder says of itself.
#[derive(Default)]
struct Told(std::sync::Mutex<BTreeMap<String, usize>>);

impl Telemetry for Told {
    fn recording(&self, event: ecs_reconciler::telemetry::RecordingEvent) {
        *self
            .0
            .lock()
            .unwrap()
            .entry(format!("{event:?}"))
            .or_default() += 1;
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_disk_pauses_recording_while_the_controller_goes_on_acting() {
    let start = std::time::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let sim = Arc::new(build_scenario("stuck-provisioning", start).unwrap().0);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("rec");
    let told = Arc::new(Told::default());
    let recorder =
        Arc::new(Recorder::start(&dir, LIMITS, Arc::clone(&told) as Arc<dyn Telemetry>).unwrap());
    // The directory goes away (a lost volume): the first segment cannot be created.
    std::fs::remove_dir(&dir).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    let controller = Arc::new(
        Controller::new(
            Arc::clone(&sim),
            scenario_policies().unwrap(),
            ControllerSettings::default(),
            AuditSink::memory(),
        )
        .with_telemetry(Arc::clone(&recorder) as Arc<dyn Telemetry>),
    );
    let token = CancellationToken::new();
    for _ in 0..12 {
        controller.pass(&token).await;
        tokio::time::advance(Duration::from_secs(30)).await;
    }
    recorder.sync();
    assert_eq!(sim.call_count("StopTask"), 2, "remediation went on");
    let stats = recorder.stats();
    let failures = stats
        .write_failures
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        failures >= 2,
        "a failed write is retried after each pause: {failures}"
    );
    assert!(stats.dropped.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert!(told.0.lock().unwrap()["WriteFailed"] >= 2);

    // The volume comes back: after the pause, recording resumes with a full snapshot.
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    tokio::time::advance(PAUSE).await;
    controller.pass(&token).await;
    recorder.finish();
    assert_eq!(told.0.lock().unwrap()["Resumed"], 1);
    let resumed = entries(&dir);
    assert!(matches!(resumed[0], Entry::Header { .. }));
    assert!(
        resumed[1..]
            .iter()
            .find(|e| !matches!(e, Entry::Action(_)))
            .is_some_and(|e| matches!(e, Entry::Full { .. })),
        "the first picture after the pause is whole"
    );
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Six hours of a 500-task cluster, a picture every 5 minutes, under `limits`; the segments
/// left (their start times) and the largest amount one observation added to the disk. Checks
/// after each observation that the disk holds at most `max_bytes`, one open segment and the
/// observation being written.
fn six_hours(dir: &Path, limits: Limits) -> (Vec<std::time::SystemTime>, u64) {
    let mut writer = SegmentWriter::open(dir, limits).unwrap();
    let ids: Vec<u32> = (0..500).collect();
    let mut largest_step = 0;
    for i in 0..72u64 {
        let before = dir_bytes(dir);
        let mut p = picture(&ids, |id| {
            if u64::from(id) % 72 == i {
                TaskStatus::Pending
            } else {
                TaskStatus::Running
            }
        });
        p.observed_at = now() + Duration::from_secs(300 * i);
        writer.observation("set-1", &p, &Clues::default()).unwrap();
        largest_step = largest_step.max(dir_bytes(dir).saturating_sub(before));
        let on_disk = dir_bytes(dir);
        let open_segment = (limits.max_bytes / 8).max(64 << 10);
        assert!(
            on_disk <= limits.max_bytes + open_segment + largest_step,
            "observation {i}: {on_disk} bytes on disk"
        );
    }
    writer.close().unwrap();
    let mut starts: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            ecs_reconciler::record::segments::parse_name(&name)
                .unwrap()
                .1
        })
        .collect();
    starts.sort();
    (starts, largest_step)
}

/// What is left replays on its own (each segment begins with whole pictures); how many
/// observations it holds.
fn replayable(dir: &Path) -> usize {
    let set = ecs_reconciler::demo::scenario_policies().unwrap();
    ecs_reconciler::backtest::backtest(dir, &set, None, Default::default(), &Default::default())
        .expect("the remaining segments replay")
        .observations
}

#[test]
fn segments_older_than_max_age_are_deleted_and_what_is_left_still_replays() {
    let dir = tempfile::tempdir().unwrap();
    let max_age = Duration::from_secs(3600);
    let limits = Limits {
        max_bytes: 1 << 30,
        max_age,
    };
    let (starts, _) = six_hours(dir.path(), limits);
    let last = now() + Duration::from_secs(300 * 71);
    // A segment spans a quarter of max_age here. It goes at the first roll after its
    // successor started more than max_age ago: nothing is kept past max_age and two spans.
    assert!(starts.len() >= 4, "segments rolled: {starts:?}");
    assert!(
        last.duration_since(starts[0]).unwrap() <= max_age + max_age / 2,
        "segments past max_age are gone: {starts:?}"
    );
    let left = replayable(dir.path());
    assert!((12..72).contains(&left), "{left}");
}

#[test]
fn the_oldest_segments_go_first_when_the_recording_would_pass_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_bytes: 12 << 10,
        max_age: Duration::from_secs(7 * 24 * 3600),
    };
    let (starts, _) = six_hours(dir.path(), limits);
    assert!(starts[0] > now(), "the first hour was deleted: {starts:?}");
    assert!(dir_bytes(dir.path()) <= limits.max_bytes + (64 << 10));
    let left = replayable(dir.path());
    assert!((1..72).contains(&left), "{left}");
}
