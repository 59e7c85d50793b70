//! `DEPD_…` environment variables: which name a setting, found from the
//! settings' own fields, so the list cannot drift from them.

use super::*;

/// The `DEPD_…` variables that are settings, and the names of those that
/// name no setting. The known keys come from the settings types themselves
/// (`struct_fields`), so the list cannot drift from the file's shape. An
/// unknown variable is reported, not fatal: wrappers and other tools set
/// `DEPD_…` variables too. Unknown keys in the file stay errors.
pub(super) fn settings_env(
    env: impl IntoIterator<Item = (String, String)>,
) -> (config::Map<String, String>, Vec<String>) {
    let mut map = config::Map::new();
    let mut unknown = Vec::new();
    for (var, value) in env {
        let Some(rest) = var.strip_prefix("DEPD_") else {
            continue;
        };
        if NON_SETTING_ENV.contains(&var.as_str()) {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if is_setting_path(&path) {
            map.insert(var, value);
        } else {
            unknown.push(var);
        }
    }
    unknown.sort();
    (map, unknown)
}

/// Whether `path` (lower-cased `__`-separated parts of a `DEPD_…`
/// variable) names a setting: a top-level key, a key of a section, or a
/// key of one name under `names`.
pub(super) fn is_setting_path(path: &[String]) -> bool {
    let has = |fields: &[&str], key: &str| fields.contains(&key);
    match path {
        [key] => {
            has(struct_fields::<FileSettings>(), key)
                && key != "names"
                && !SECTIONS.iter().any(|(s, _)| s == key)
        }
        [section, key] => SECTIONS
            .iter()
            .any(|(s, fields)| s == section && has(fields(), key)),
        [names, name, key] => {
            names == "names" && !name.is_empty() && has(struct_fields::<NameSettings>(), key)
        }
        _ => false,
    }
}

/// The file's sections (tables) and their keys.
pub(super) type Fields = fn() -> &'static [&'static str];
pub(super) const SECTIONS: [(&str, Fields); 6] = [
    ("apple", struct_fields::<AppleSettings>),
    ("sync", struct_fields::<SyncSettings>),
    ("assigner", struct_fields::<AssignerSettings>),
    ("webhook", struct_fields::<WebhookSettings>),
    ("demo", struct_fields::<DemoSettings>),
    ("mdm", struct_fields::<MdmSettings>),
];

/// The field names serde's derive gives a struct, read by asking it to
/// deserialize from a probe that only records them.
pub(super) fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe(Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for &mut Probe {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(serde::de::Error::custom("probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe.0.unwrap_or(&[])
}
