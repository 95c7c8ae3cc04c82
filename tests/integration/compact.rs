//! The compact domain values: shared strings, tag lists, the interner, the cache's task index.

use std::collections::BTreeMap;
use std::hash::BuildHasherDefault;

use ecs_reconciler::cache::TaskIndex;
use ecs_reconciler::compact::{Interner, Shared, Tags};

use crate::support::fixtures::TaskBuilder;

#[test]
fn tags_keep_the_last_value_of_a_key_and_sort_by_key() {
    let tags: Tags = [("b", "1"), ("a", "2"), ("b", "3")].into_iter().collect();
    let pairs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (&**k, &**v)).collect();
    assert_eq!(pairs, [("a", "2"), ("b", "3")]);
}

#[test]
fn tags_insert_remove_and_retain_keep_the_order() {
    let mut tags = Tags::new();
    assert_eq!(tags.insert("m", "1"), None);
    assert_eq!(tags.insert("a", "2"), None);
    assert_eq!(tags.insert("z", "3"), None);
    assert_eq!(tags.insert("m", "4").as_deref(), Some("1"));
    let keys: Vec<&str> = tags.keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["a", "m", "z"]);
    assert_eq!(tags.remove("a").as_deref(), Some("2"));
    assert_eq!(tags.remove("a"), None);
    assert_eq!(tags.get("m").map(|v| v.as_str()), Some("4"));
    assert_eq!(tags["z"], "3");
    assert!(!tags.contains_key("a"));
    assert_eq!(tags.len(), 2);
    tags.retain(|k, _| k != "m");
    assert_eq!(tags, Tags::from([("z", "3")]));
    tags.clear();
    assert!(tags.is_empty());
}

#[test]
fn a_change_to_a_clone_of_tags_leaves_the_original_alone() {
    let original = Tags::from([("team", "data")]);
    let mut copy = original.clone();
    copy.insert("env", "prod");
    assert_eq!(original.len(), 1);
    assert_eq!(copy.len(), 2);
}

#[test]
fn tags_serialize_as_the_map_they_replace() {
    let map: BTreeMap<String, String> = [("team", "x"), ("env", "prod"), ("cost-center", "c")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let tags: Tags = map.clone().into_iter().collect();
    let json = serde_json::to_string(&tags).unwrap();
    assert_eq!(json, serde_json::to_string(&map).unwrap());
    assert_eq!(json, r#"{"cost-center":"c","env":"prod","team":"x"}"#);
    let back: Tags = serde_json::from_str(&json).unwrap();
    assert_eq!(back, tags);
    let yaml = serde_saphyr::to_string(&tags).unwrap();
    assert_eq!(yaml, serde_saphyr::to_string(&map).unwrap());
    assert_eq!(serde_json::from_str::<Tags>("{}").unwrap(), Tags::new());
    assert!(serde_json::from_str::<Tags>("[]").is_err());
}

#[test]
fn shared_strings_compare_and_serialize_as_strings() {
    let s = Shared::from("arn:aws:ecs:us-east-1:1:cluster/a");
    assert_eq!(s, "arn:aws:ecs:us-east-1:1:cluster/a");
    assert_eq!(s, String::from("arn:aws:ecs:us-east-1:1:cluster/a"));
    assert_eq!(
        serde_json::to_string(&s).unwrap(),
        r#""arn:aws:ecs:us-east-1:1:cluster/a""#
    );
    let back: Shared = serde_json::from_str(r#""a\"b""#).unwrap();
    assert_eq!(back, "a\"b");
    assert_eq!(format!("{s}"), s.as_str());
    assert_eq!(format!("{s:?}"), format!("{:?}", s.as_str()));
}

#[test]
fn interned_values_equal_the_originals_and_share_one_allocation() {
    let mut interner = Interner::default();
    let a = interner.intern(&String::from("service:web"));
    let b = interner.intern("service:web");
    assert_eq!(a, "service:web");
    assert!(std::ptr::eq(a.as_str(), b.as_str()));
    let t1 = interner.tags([("env", "prod"), ("team", "a")]);
    let t2 = interner.tags([("env", "prod"), ("team", "a")]);
    assert_eq!(t1, t2);
    let key = |t: &Tags| t.keys().next().unwrap().as_str().as_ptr();
    assert_eq!(key(&t1), key(&t2));
    assert_eq!(
        interner.tags([("env", "prod")]),
        Tags::from([("env", "prod")])
    );
    let t3 = interner.tags([("env", "dev"), ("team", "a")]);
    assert_ne!(t1, t3);
    assert_eq!(t3["env"], "dev");
    // Another order, the same tags; a key given twice keeps its last value.
    assert_eq!(interner.tags([("team", "a"), ("env", "prod")]), t1);
    assert_eq!(
        interner.tags([("env", "x"), ("team", "a"), ("env", "prod")]),
        t1
    );
    assert_eq!(interner.tags([]), Tags::new());
}

#[test]
fn a_task_serializes_as_before() {
    let task = TaskBuilder::service("web", "t1").tag("team", "a").build();
    let json = serde_json::to_value(&task).unwrap();
    assert_eq!(json["cluster_arn"], task.cluster_arn.as_str());
    assert_eq!(json["group"], "service:web");
    assert_eq!(json["tags"], serde_json::json!({"team": "a"}));
    assert_eq!(json["overrides"]["containers"], serde_json::json!([]));
    let back: ecs_reconciler::domain::Task = serde_json::from_value(json).unwrap();
    assert_eq!(back, task);
}

/// Hashes every ARN to the same value.
#[derive(Default)]
struct Colliding;

impl std::hash::Hasher for Colliding {
    fn finish(&self) -> u64 {
        7
    }
    fn write(&mut self, _: &[u8]) {}
}

#[test]
fn the_task_index_finds_every_task_when_hashes_collide() {
    let tasks: Vec<_> = (0..5)
        .map(|i| TaskBuilder::service("web", &format!("t{i}")).build())
        .collect();
    let index = TaskIndex::<BuildHasherDefault<Colliding>>::of(&tasks);
    for (i, task) in tasks.iter().enumerate() {
        assert_eq!(index.get(&tasks, &task.arn), Some(i));
    }
    assert_eq!(
        index.get(&tasks, "arn:aws:ecs:us-east-1:1:task/c/none"),
        None
    );
    let fair = TaskIndex::<std::hash::RandomState>::of(&tasks);
    assert_eq!(fair.get(&tasks, &tasks[3].arn), Some(3));
    assert_eq!(fair.get(&tasks[..3], &tasks[3].arn), None);
}

#[test]
fn overrides_hold_nothing_when_a_task_has_none_and_read_as_given_otherwise() {
    use ecs_reconciler::domain::{Overrides, TaskOverrides};
    let none = Overrides::from(TaskOverrides::default());
    assert_eq!(none, Overrides::default());
    assert_eq!(*none, TaskOverrides::default());
    let given = TaskOverrides {
        cpu: Some("512".into()),
        ..TaskOverrides::default()
    };
    let some = Overrides::from(given.clone());
    assert_eq!(*some, given);
    assert_eq!(
        serde_json::to_value(&some).unwrap(),
        serde_json::to_value(&given).unwrap()
    );
    let back: Overrides = serde_json::from_value(serde_json::to_value(&some).unwrap()).unwrap();
    assert_eq!(back, some);
}
