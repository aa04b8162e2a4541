//! Embeds `migrations/<version>_<description>.sql` in version order as `OWN_MIGRATIONS`
//! (`src/lib.rs`): a migration is a file; versions below 1000 are the runtime's. By hand,
//! as sqlx's `migrate!` needs its `macros` feature: a proc-macro build of sqlx and both drivers.

use std::{collections::BTreeMap, env, fmt::Write as _, fs, path::Path};

fn main() {
    let folder = fs::canonicalize("migrations").expect("migrations/ is there");
    println!("cargo::rerun-if-changed={}", folder.display());
    let mut migrations = BTreeMap::new();
    for entry in fs::read_dir(&folder).expect("migrations/ is readable") {
        let entry = entry.expect("migrations/ lists");
        let name = entry.file_name().into_string().unwrap_or_default();
        // The folder's README, and an editor's swap and backup files.
        if name == "README.md" || name.starts_with(['.', '#']) || name.ends_with('~') {
            continue;
        }
        let (version, description) = name
            .strip_suffix(".sql")
            .and_then(|stem| stem.split_once('_'))
            .and_then(|(version, description)| Some((version.parse::<i64>().ok()?, description)))
            .filter(|(version, _)| *version >= 1000)
            .unwrap_or_else(|| {
                panic!("migrations/{name}: only migrations belong here, each named <version>_<description>.sql with a version from 1000, such as 1001_item_tags.sql")
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
    let out = Path::new(&env::var_os("OUT_DIR").expect("cargo sets it")).join("migrations.rs");
    fs::write(out, list + "]\n").expect("the migration list is written");
}
