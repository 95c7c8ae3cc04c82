//! Compact values for the domain model: what a large cluster's cached picture holds once per
//! task, kept small.
//!
//! - [`Shared`]: an immutable, cheap-to-clone string (an `Arc<str>`) for the ARNs and names
//!   that many tasks of a cluster repeat (cluster, task definition, group, container instance).
//! - [`Tags`]: resource tags as one shared, sorted list (no map nodes per task).
//! - [`Interner`]: shares equal strings and tag lists among the tasks of one observation; it
//!   lives for the conversion of one answer and is dropped after.
//!
//! Each serializes exactly as the plain type it replaces: a string, a map of strings.

use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An immutable string whose clones share one allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shared(Arc<str>);

impl Shared {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::from("")
    }
}

impl Deref for Shared {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Shared {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Shared {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Shared {
    fn from(s: &str) -> Self {
        Shared(Arc::from(s))
    }
}

impl From<&String> for Shared {
    fn from(s: &String) -> Self {
        Shared::from(s.as_str())
    }
}

impl From<String> for Shared {
    fn from(s: String) -> Self {
        Shared(Arc::from(s))
    }
}

impl From<Shared> for String {
    fn from(s: Shared) -> Self {
        s.as_str().to_string()
    }
}

impl From<&Shared> for String {
    fn from(s: &Shared) -> Self {
        s.as_str().to_string()
    }
}

impl PartialEq<str> for Shared {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Shared {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Shared {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Shared> for str {
    fn eq(&self, other: &Shared) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Shared> for &str {
    fn eq(&self, other: &Shared) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Shared> for String {
    fn eq(&self, other: &Shared) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Shared {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

impl<'de> Deserialize<'de> for Shared {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Cow::<'de, str>::deserialize(deserializer).map(|s| Shared::from(s.as_ref()))
    }
}

impl schemars::JsonSchema for Shared {
    fn schema_name() -> Cow<'static, str> {
        String::schema_name()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

/// Resource tags, sorted by key (each key once) so output and hashing are stable. Clones
/// share one list; a change makes a new one.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Tags(Arc<[(Shared, Shared)]>);

impl Tags {
    pub fn new() -> Self {
        Tags::default()
    }

    /// Tags from pairs already sorted by key, each key once (checked in debug builds).
    fn from_sorted(pairs: Vec<(Shared, Shared)>) -> Self {
        debug_assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0));
        Tags(Arc::from(pairs))
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&Shared> {
        self.position(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(&mut self, key: impl Into<Shared>, value: impl Into<Shared>) -> Option<Shared> {
        let (key, value) = (key.into(), value.into());
        let mut pairs = self.0.to_vec();
        let old = match self.position(&key) {
            Ok(i) => Some(std::mem::replace(&mut pairs[i].1, value)),
            Err(i) => {
                pairs.insert(i, (key, value));
                None
            }
        };
        *self = Tags::from_sorted(pairs);
        old
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Shared> {
        let i = self.position(key).ok()?;
        let mut pairs = self.0.to_vec();
        let (_, value) = pairs.remove(i);
        *self = Tags::from_sorted(pairs);
        Some(value)
    }

    pub fn clear(&mut self) {
        *self = Tags::new();
    }

    /// Keeps only the tags `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&Shared, &Shared) -> bool) {
        if self.iter().all(|(k, v)| keep(k, v)) {
            return;
        }
        let pairs = self.0.iter().filter(|(k, v)| keep(k, v)).cloned().collect();
        *self = Tags::from_sorted(pairs);
    }

    /// The tags in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Shared, &Shared)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Shared> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &Shared> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The value of a key that must be there (as a map's index panics without it).
impl std::ops::Index<&str> for Tags {
    type Output = Shared;
    fn index(&self, key: &str) -> &Shared {
        self.get(key).expect("no such tag")
    }
}

/// As a map: the last value given for a key wins.
impl<K: Into<Shared>, V: Into<Shared>> FromIterator<(K, V)> for Tags {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut pairs: Vec<(Shared, Shared)> = iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        // Latest first, then a stable sort: the first of each key is the one to keep.
        pairs.reverse();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|later, kept| later.0 == kept.0);
        Tags::from_sorted(pairs)
    }
}

impl<K: Into<Shared>, V: Into<Shared>, const N: usize> From<[(K, V); N]> for Tags {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl<K: Into<Shared>, V: Into<Shared>> Extend<(K, V)> for Tags {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let old = self.0.iter().cloned();
        let new = iter.into_iter().map(|(k, v)| (k.into(), v.into()));
        *self = old.chain(new).collect();
    }
}

impl<'a> IntoIterator for &'a Tags {
    type Item = (&'a Shared, &'a Shared);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Shared, Shared)>,
        fn(&'a (Shared, Shared)) -> (&'a Shared, &'a Shared),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer).map(Tags::from_iter)
    }
}

impl schemars::JsonSchema for Tags {
    fn schema_name() -> Cow<'static, str> {
        BTreeMap::<String, String>::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        BTreeMap::<String, String>::schema_id()
    }

    fn inline_schema() -> bool {
        BTreeMap::<String, String>::inline_schema()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        BTreeMap::<String, String>::json_schema(generator)
    }
}

/// Shares equal strings and tag lists among the values converted from one observation.
#[derive(Debug, Default)]
pub struct Interner {
    strings: HashSet<Shared>,
    /// The distinct tag lists met so far, each with its pairs in the order they came in.
    tag_lists: Vec<(Vec<(Shared, Shared)>, Tags)>,
}

/// How many distinct tag lists one interner keeps (tasks of a cluster have few); lists past
/// these are made anew each time, unshared.
const TAG_LISTS: usize = 64;

impl Interner {
    /// `s`, shared with every equal string interned before.
    pub fn intern(&mut self, s: &str) -> Shared {
        if let Some(found) = self.strings.get(s) {
            return found.clone();
        }
        let shared = Shared::from(s);
        self.strings.insert(shared.clone());
        shared
    }

    /// The tags of `pairs` (key, value; the last value of a key wins), shared with the list
    /// of every equal sequence of pairs interned before. Nothing is allocated for a sequence
    /// met before.
    pub fn tags<'a, I>(&mut self, pairs: I) -> Tags
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
        I::IntoIter: Clone,
    {
        let pairs = pairs.into_iter();
        let same = |seen: &[(Shared, Shared)]| {
            let mut given = pairs.clone();
            seen.iter()
                .all(|(k, v)| given.next() == Some((k.as_str(), v.as_str())))
                && given.next().is_none()
        };
        if let Some((_, tags)) = self.tag_lists.iter().find(|(seen, _)| same(seen)) {
            return tags.clone();
        }
        let seen: Vec<(Shared, Shared)> = pairs
            .map(|(k, v)| (self.intern(k), self.intern(v)))
            .collect();
        let tags: Tags = seen.iter().cloned().collect();
        if self.tag_lists.len() < TAG_LISTS {
            self.tag_lists.push((seen, tags.clone()));
        }
        tags
    }
}
