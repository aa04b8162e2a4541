//! Serde for [`Settings`], written out because the service's section is
//! named after its kind (`[api]`, `[worker]`), which a derive cannot name,
//! and `#[serde(flatten)]` would buffer the section and lose the key path
//! that errors name (`worker.workers`, not just `workers`). As a derive
//! with `deny_unknown_fields` would, it refuses an unknown section and
//! requires every section (the loader's defaults layer holds them all, so
//! this bites a file read whole, such as the shipped `config/default.toml`
//! in its test). The loader refuses unknown keys before this code runs,
//! naming the layer they came from.

use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, MapAccess, Visitor},
    ser::SerializeMap,
};

use super::Settings;
use crate::Service;

/// The runtime's sections, in the order they are written.
const RUNTIME_SECTIONS: [&str; 7] = [
    "log", "http", "metrics", "timeouts", "tokio", "shutdown", "database",
];

impl<S: Service> Serialize for Settings<S> {
    fn serialize<T: Serializer>(&self, serializer: T) -> Result<T::Ok, T::Error> {
        let mut map = serializer.serialize_map(Some(RUNTIME_SECTIONS.len() + 1))?;
        map.serialize_entry("log", &self.log)?;
        map.serialize_entry("http", &self.http)?;
        map.serialize_entry("metrics", &self.metrics)?;
        map.serialize_entry("timeouts", &self.timeouts)?;
        map.serialize_entry("tokio", &self.tokio)?;
        map.serialize_entry("shutdown", &self.shutdown)?;
        map.serialize_entry("database", &self.database)?;
        map.serialize_entry(S::KIND, &self.service)?;
        map.end()
    }
}

impl<'de, S: Service> Deserialize<'de> for Settings<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SettingsVisitor(PhantomData))
    }
}

struct SettingsVisitor<S>(PhantomData<S>);

impl<'de, S: Service> Visitor<'de> for SettingsVisitor<S> {
    type Value = Settings<S>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the settings tables, [{}] among them", S::KIND)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut log = None;
        let mut http = None;
        let mut metrics = None;
        let mut timeouts = None;
        let mut tokio = None;
        let mut shutdown = None;
        let mut database = None;
        let mut service = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "log" => log = Some(map.next_value()?),
                "http" => http = Some(map.next_value()?),
                "metrics" => metrics = Some(map.next_value()?),
                "timeouts" => timeouts = Some(map.next_value()?),
                "tokio" => tokio = Some(map.next_value()?),
                "shutdown" => shutdown = Some(map.next_value()?),
                "database" => database = Some(map.next_value()?),
                section if section == S::KIND => service = Some(map.next_value()?),
                unknown => {
                    return Err(de::Error::custom(format!(
                        "unknown section `{unknown}`, expected one of {}, {}",
                        RUNTIME_SECTIONS.join(", "),
                        S::KIND
                    )));
                }
            }
        }
        Ok(Settings {
            log: log.ok_or_else(|| de::Error::missing_field("log"))?,
            http: http.ok_or_else(|| de::Error::missing_field("http"))?,
            metrics: metrics.ok_or_else(|| de::Error::missing_field("metrics"))?,
            timeouts: timeouts.ok_or_else(|| de::Error::missing_field("timeouts"))?,
            tokio: tokio.ok_or_else(|| de::Error::missing_field("tokio"))?,
            shutdown: shutdown.ok_or_else(|| de::Error::missing_field("shutdown"))?,
            database: database.ok_or_else(|| de::Error::missing_field("database"))?,
            service: service.ok_or_else(|| de::Error::missing_field(S::KIND))?,
        })
    }
}
