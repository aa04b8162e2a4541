//! Serde for [`Settings`], written out because the service's section is
//! named after its kind (`[api]`, `[worker]`), which a derive cannot name,
//! and `#[serde(flatten)]` would buffer the section and lose the key path
//! that errors name (`worker.concurrency`, not just `concurrency`).
//! Unknown keys never reach this code: the loader refuses them first,
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
        // Absent sections take their defaults, as absent keys do.
        let mut settings = Settings::<S>::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "log" => settings.log = map.next_value()?,
                "http" => settings.http = map.next_value()?,
                "metrics" => settings.metrics = map.next_value()?,
                "timeouts" => settings.timeouts = map.next_value()?,
                "tokio" => settings.tokio = map.next_value()?,
                "shutdown" => settings.shutdown = map.next_value()?,
                "database" => settings.database = map.next_value()?,
                section if section == S::KIND => settings.service = map.next_value()?,
                unknown => return Err(de::Error::unknown_field(unknown, &RUNTIME_SECTIONS)),
            }
        }
        Ok(settings)
    }
}
