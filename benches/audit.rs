//! The cost of one audit record to a file: an attempt's record (intent or outcome), written
//! whole, flushed to the OS and synced to the disk; and a skipped record, written and flushed
//! only. Run: `cargo bench --bench audit`.
//! The file lives in `AUDIT_BENCH_DIR` (default: the system temp directory), so the figure is
//! that of the disk the audit log is on.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use ecs_reconciler::audit::{AuditRecord, AuditSink, Outcome};

fn record() -> AuditRecord {
    AuditRecord {
        time: AuditRecord::time_of(UNIX_EPOCH + Duration::from_secs(1_900_000_000)),
        mode: "enforce",
        policy_set: "git:3f1c0a9".into(),
        policy: "web-stuck-tasks".into(),
        action: "stopTask".into(),
        target: "arn:aws:ecs:us-east-1:123456789012:task/prod-web/63033b0c9d5a4f1e8b7c6d5e4f3a2b1c"
            .into(),
        cluster: "prod-web".into(),
        account: None,
        region: None,
        service: Some("web".into()),
        reason: "stuck in PROVISIONING for 15m, limit 10m".into(),
        evidence: [
            ("capacityProviders", "web-asg-cp"),
            ("clockSource", "createdAt"),
            ("clockStartedAt", "2030-03-17T17:46:40Z"),
            ("desiredStatus", "RUNNING"),
            ("lastStatus", "PROVISIONING"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into(),
        outcome: Outcome::Started,
        attempt: Some("5be1c0d2-17".into()),
        detail: Some("calls: StopTask".into()),
    }
}

fn dir() -> PathBuf {
    std::env::var_os("AUDIT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(dir()).expect("a temp directory");
    let record = record();
    let sink = AuditSink::file(&dir.path().join("audit.jsonl")).unwrap();
    c.bench_function("intent record: written, flushed, synced", |b| {
        b.iter(|| sink.record(black_box(&record)).unwrap())
    });
    let skipped = AuditRecord {
        outcome: Outcome::Skipped("maxInFlightPerService"),
        attempt: None,
        ..record
    };
    c.bench_function("skipped record: written, flushed", |b| {
        b.iter(|| sink.record(black_box(&skipped)).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
