//! Embeds the api's migrations: every `src/api/migrations/<version>_<description>.sql`
//! becomes an entry of `store::MIGRATIONS`, in version order, so adding a
//! migration is adding a file. Versions start at 1000: those below are the
//! runtime's (its engines' tables).

use std::{collections::BTreeMap, env, fmt::Write as _, fs, path::PathBuf};

fn main() {
    let folder = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("src/api/migrations");
    println!("cargo::rerun-if-changed={}", folder.display());
    let mut migrations = BTreeMap::new();
    for entry in fs::read_dir(&folder).expect("src/api/migrations/ is readable") {
        let entry = entry.expect("src/api/migrations/ lists");
        let name = entry.file_name().into_string().unwrap_or_default();
        let (version, description) = name
            .strip_suffix(".sql")
            .and_then(|stem| stem.split_once('_'))
            .and_then(|(version, description)| Some((version.parse::<i64>().ok()?, description)))
            .filter(|(version, _)| *version >= 1000)
            .unwrap_or_else(|| {
                panic!("src/api/migrations/{name}: only migrations belong here, each named <version>_<description>.sql with a version from 1000, such as 1001_item_tags.sql")
            });
        let path = entry.path().display().to_string();
        let entry = (description.replace('_', " "), path);
        if let Some((_, first)) = migrations.insert(version, entry) {
            panic!("{first} and {name} both have version {version}: give one another");
        }
    }
    let list = migrations
        .iter()
        .fold(String::from("&[\n"), |mut list, (version, (description, path))| {
            let _ = writeln!(
                list,
                "Migration {{ version: {version}, description: {description:?}, sql: include_str!({path:?}) }},"
            );
            list
        });
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it"));
    fs::write(out.join("migrations.rs"), list + "]\n").expect("the migration list is written");
}
